/**
 * Typed errors. Every error thrown by shira-wasm is a {@link ShiraError} with a stable `code` (for
 * programs) and a message that names the tensor, module or field and the offending value (for people).
 *
 * ```ts
 * try { await PeftModel.fromPretrained(model, dir); }
 * catch (e) { if (e instanceof FormatError && e.code === "SAFETENSORS_OFFSETS") { ... } }
 * ```
 */

/** Stable error codes. Format codes follow the categories of PEFT's fixture manifest. */
export type ErrorCode =
  // safetensors container
  | "SAFETENSORS_HEADER_LENGTH" // 8-byte length missing, too large for the file, or over the limit
  | "SAFETENSORS_HEADER" // header is not a UTF-8 JSON object of the expected form
  | "SAFETENSORS_DTYPE" // unknown dtype, or a dtype that cannot be converted as asked
  | "SAFETENSORS_OFFSETS" // data_offsets malformed, overlapping, with gaps, or not starting at 0
  | "SAFETENSORS_TENSOR_SIZE" // byte length differs from product(shape) * sizeof(dtype)
  | "SAFETENSORS_INCOMPLETE" // the data section does not end exactly at the end of the file
  | "SAFETENSORS_DUPLICATE" // a tensor name appears twice
  | "SAFETENSORS_METADATA" // __metadata__ is not a map of strings
  | "SAFETENSORS_VALUE_RANGE" // an integer does not fit the requested type (I64 -> i32)
  | "SAFETENSORS_MISSING" // a requested tensor is not in the file
  // adapter contents
  | "SHIRA_INDEX_OUT_OF_RANGE"
  | "SHIRA_NNZ_MISMATCH"
  | "SHIRA_DUPLICATE_INDEX"
  | "SHIRA_MODULE_NOT_FOUND"
  | "SHIRA_NOT_LINEAR"
  | "SHIRA_MISSING_TENSOR"
  | "SHIRA_UNEXPECTED_TENSOR"
  // configuration
  | "CONFIG_PEFT_TYPE"
  | "CONFIG_R"
  | "CONFIG_INVALID"
  | "CONFIG_NO_TARGET"
  | "CONFIG_MASK"
  | "MODEL_UNSUPPORTED" // a checkpoint's model_type (or a config feature) this library does not run
  // shapes and state
  | "SHAPE_MISMATCH"
  | "STATE_DICT_MISMATCH"
  | "ADAPTER_NOT_FOUND"
  | "ADAPTER_EXISTS"
  | "ADAPTER_STATE"
  | "NONFINITE" // NaN or ±Inf: an adapter file's value (FormatError), or a safe merge's result (StateError)
  | "USE_AFTER_FREE" // a freed buffer, or a disposed / unloaded object (DecoderModel, KVCache, ShiraModel, LoraModel)
  | "WASM_UNSUPPORTED"
  | "WASM_NOT_INITIALIZED"
  | "OUT_OF_MEMORY" // RuntimeError: the heap is full, or a size is invalid, ≥ 2^32 bytes or over one heap block (992 MiB)
  | "IO"
  | "ABORTED"
  | "THREADS" // RuntimeError: worker threads could not start, or a kernel part failed on a worker
  // StateError: the object is in use by a running operation (train() on a ShiraModel / LoraModel: every adapter
  // change; a generate()/stream() on a DecoderModel: a second generation, dispose(), and adapter changes that
  // replace or free what the running loop uses). `details.busy` names the running operation.
  | "BUSY";

/** Base class of every error thrown by this library. */
export class ShiraError extends Error {
  readonly code: ErrorCode;
  /** Machine-readable context: the tensor/module/field involved and the offending values. */
  readonly details: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }
}

/** A file or byte stream is malformed (safetensors container, adapter tensors, JSON). */
export class FormatError extends ShiraError {}
/** A configuration value is invalid (`r`, `peft_type`, target modules, masks). */
export class ConfigError extends ShiraError {}
/** A tensor or argument has the wrong shape or size. */
export class ShapeError extends ShiraError {}
/** An operation is not allowed in the current state (unknown adapter, already merged, freed buffer, NaN in a safe merge, busy: `BUSY`). */
export class StateError extends ShiraError {}
/** The WebAssembly runtime is missing, unsupported or out of memory. */
export class RuntimeError extends ShiraError {}
