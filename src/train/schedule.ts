/**
 * Learning-rate schedules with linear warm-up: `constant`, `linear` (decay to 0) and `cosine` (to 0), as the
 * `transformers` schedules `get_constant_schedule_with_warmup`, `get_linear_schedule_with_warmup` and
 * `get_cosine_schedule_with_warmup` (half a cosine period).
 *
 * ```ts
 * const f = lrMultiplier({ type: "cosine", warmupSteps: 10 }, 100);
 * f(0);   // 0      (warm-up starts at 0)
 * f(10);  // 1
 * f(55);  // 0.5
 * ```
 */
import { ConfigError } from "../errors.js";

export interface ScheduleSpec {
  type: "constant" | "linear" | "cosine";
  /** Steps of linear warm-up from 0 to the base rate (default 0). */
  warmupSteps?: number;
  /** Warm-up as a fraction of all steps (used when `warmupSteps` is not given). */
  warmupRatio?: number;
}

/** The multiplier of the base learning rate at each optimizer step (0-based). */
export function lrMultiplier(spec: ScheduleSpec | ScheduleSpec["type"], totalSteps: number): (step: number) => number {
  const s: ScheduleSpec = typeof spec === "string" ? { type: spec } : spec;
  if (!["constant", "linear", "cosine"].includes(s.type)) throw new ConfigError("CONFIG_INVALID", `schedule: unknown type ${JSON.stringify(s.type)} (constant, linear, cosine)`);
  const warm = Math.max(0, Math.floor(s.warmupSteps ?? (s.warmupRatio ?? 0) * totalSteps));
  return (step: number) => {
    if (step < warm) return step / Math.max(1, warm);
    if (s.type === "constant") return 1;
    const progress = (step - warm) / Math.max(1, totalSteps - warm);
    if (s.type === "linear") return Math.max(0, 1 - progress);
    return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
  };
}
