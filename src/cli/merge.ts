/**
 * `shira merge --base model.safetensors --adapter DIR [--adapter DIR2 --weight 0.5 ...] --out merged.safetensors`:
 * bakes adapters into a base model file. The base file's tensors become a generic module tree (every 2-D
 * `<name>.weight` with an optional `<name>.bias` is a `Linear`), the adapters are loaded onto it exactly as
 * `PeftModel.fromPretrained` / `loadAdapter` do, fused with their weights, and `mergeAndUnload()` gives the
 * merged tensors, written under the base file's key names and dtypes.
 */
import { readFile } from "node:fs/promises";
import { ShapeError, ShiraError } from "../errors.js";
import { Linear } from "../nn/linear.js";
import { Module } from "../nn/module.js";
import { Tensor } from "../nn/tensor.js";
import { readSafetensors, toFloat32, writeSafetensors, type SafetensorsFile, type TensorInput } from "../io/safetensors.js";
import { ShiraModel } from "../shira/model.js";
import { readAdapterFiles } from "../io/peft.js";

/** A container module without a forward, for models rebuilt from a state dict. */
class Container extends Module {
  forward(_x: Tensor): Tensor {
    throw new ShiraError("ADAPTER_STATE", "a model rebuilt from a safetensors file has no forward; use it to merge and save");
  }
}

/**
 * Rebuilds a module tree from a safetensors file: `a.b.weight` (2-D) + optional `a.b.bias` become `Linear` at
 * `a.b`; every other tensor is kept as a buffer (copied through unchanged).
 */
export function moduleFromSafetensors(file: SafetensorsFile): Module {
  const root = new Container();
  const at = (path: string[]): Module => {
    let m: Module = root;
    for (const part of path) {
      const child = m.namedChildren().find(([n]) => n === part)?.[1];
      m = child ?? m.registerModule(part, new Container());
    }
    return m;
  };
  const names = file.names();
  const used = new Set<string>();
  for (const k of names) {
    const e = file.entry(k);
    if (!k.endsWith(".weight") || e.shape.length !== 2) continue;
    const prefix = k.slice(0, -".weight".length);
    const biasKey = `${prefix}.bias`;
    const bias = file.has(biasKey) && file.entry(biasKey).shape.length === 1 && file.entry(biasKey).shape[0] === e.shape[0];
    const parts = prefix.split(".");
    const parent = at(parts.slice(0, -1));
    if (parent.namedChildren().some(([n]) => n === parts[parts.length - 1])) continue;
    const lin = parent.registerModule(parts[parts.length - 1], new Linear(e.shape[1], e.shape[0], { bias }));
    lin.weight.data.set(toFloat32(file.get(k)));
    used.add(k);
    if (bias) {
      lin.bias!.data.set(toFloat32(file.get(biasKey)));
      used.add(biasKey);
    }
  }
  for (const k of names) {
    if (used.has(k)) continue;
    const parts = k.split(".");
    const data = toFloat32(file.get(k));
    at(parts.slice(0, -1)).registerBuffer(parts[parts.length - 1], Tensor.from(data, file.entry(k).shape));
  }
  return root;
}

export interface MergeSpec {
  base: string;
  adapters: { path: string; weight: number }[];
  out: string;
  safeMerge?: boolean;
}

/** Merges adapters into the base file's tensors; returns the bytes of the merged file (same keys and dtypes). */
export async function mergeFiles(spec: MergeSpec): Promise<{ bytes: Uint8Array; merged: string[] }> {
  if (spec.adapters.length === 0) throw new ShapeError("SHAPE_MISMATCH", "merge: give at least one --adapter");
  const baseBytes = new Uint8Array(await readFile(spec.base).catch((e: Error) => {
    throw new ShiraError("IO", `cannot read ${spec.base}: ${e.message}`);
  }));
  const file = readSafetensors(baseBytes);
  const model = moduleFromSafetensors(file);
  const names = spec.adapters.map((_, i) => `adapter${i}`);
  const first = await readAdapterFiles(spec.adapters[0].path);
  const peft = await ShiraModel.fromPretrained(model, { "adapter_config.json": first.config as string, "adapter_model.safetensors": first.model }, { adapterName: names[0] });
  for (let i = 1; i < spec.adapters.length; i++) await peft.loadAdapter(spec.adapters[i].path, names[i]);
  peft.fuse(spec.adapters.map((a, i) => ({ name: names[i], weight: a.weight })), { safeMerge: spec.safeMerge });
  const merged = peft.shiraLayers().map(([n]) => n);
  const plain = peft.mergeAndUnload();
  const sd = plain.stateDict();
  const tensors = new Map<string, TensorInput>();
  for (const k of file.names()) {
    const e = file.entry(k);
    const t = sd[k];
    if (!t) throw new ShiraError("STATE_DICT_MISMATCH", `merge: tensor ${k} went missing`);
    const touched = merged.some((m) => k === `${m}.weight`);
    if (!touched) {
      tensors.set(k, { dtype: e.dtype, shape: e.shape, data: file.get(k).bytes });
      continue;
    }
    const data = t.toArray();
    if (e.dtype === "F32" || e.dtype === "F16" || e.dtype === "BF16") tensors.set(k, { dtype: e.dtype, shape: e.shape, data });
    else if (e.dtype === "F64") tensors.set(k, { dtype: "F64", shape: e.shape, data: Float64Array.from(data) });
    else throw new ShiraError("SAFETENSORS_DTYPE", `merge: ${k} has dtype ${e.dtype}; only float weights can take an adapter`);
  }
  return { bytes: writeSafetensors(tensors, file.metadata ?? undefined), merged };
}
