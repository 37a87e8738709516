/**
 * Worker threads in Node (registered by the Node entry, src/node.ts): `worker_threads` workers running the pool's
 * worker source, unref'd so that an idle pool never keeps the process alive, and the cores from
 * `os.availableParallelism()`.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { ThreadHost } from "./threads.js";

/** Node's bootstrap of a worker: the data is the Worker's `workerData`. */
const NODE_BOOT = 'const wt = require("node:worker_threads");\nserve(wt.workerData, (m) => wt.parentPort.postMessage(m));\n';

export const nodeThreadHost: ThreadHost = {
  startWorker(source, data, onMessage, onError) {
    const w = new Worker(source + NODE_BOOT, { eval: true, workerData: data });
    w.on("message", onMessage);
    w.on("error", (e) => onError(String((e as Error)?.message ?? e)));
    w.unref(); // after the listeners (adding a 'message' listener refs the worker)
    return { terminate: () => void w.terminate() };
  },
  cores: () => availableParallelism(),
};
