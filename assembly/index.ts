// Entry point of the wasm module: one op family per file, all exported here.
export * from "./heap";
export * from "./gemm";
export * from "./spmm";
export * from "./sddmm";
export * from "./scatter";
export * from "./lowrank";
export * from "./activation";
export * from "./softmax";
export * from "./optim";
export * from "./vector";
export * from "./switch";
export * from "./norm";
export * from "./rope";
export * from "./attention";
export * from "./embedding";
export * from "./backward";
export * from "./half";
export { thread_scratch_bytes, thread_set_scratch } from "./util/gemm";
