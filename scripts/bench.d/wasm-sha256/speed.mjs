// Pure wasm sha256 speed: instantiates the wasm32 build of this crate in Node's V8 (the engine
// workerd embeds), checks one digest against Node's crypto, then hashes a 16 MiB buffer in
// linear memory until MIB MiB are done, best of 3. Prints MB/s (10^6 bytes).
//   usage: node speed.mjs FILE.wasm [MIB]
import { readFileSync } from "node:fs";
import { createHash, randomFillSync } from "node:crypto";

const [file, mibArg] = process.argv.slice(2);
const totalMiB = Number(mibArg || 256);
const { instance } = await WebAssembly.instantiate(readFileSync(file), {});
const { memory, alloc, sha256 } = instance.exports;
const len = 16 << 20;
const data = alloc(len);
const out = alloc(32);
randomFillSync(new Uint8Array(memory.buffer, data, len));
const view = () => new Uint8Array(memory.buffer);

sha256(data, len, 1, out);
const got = Buffer.from(view().subarray(out, out + 32)).toString("hex");
const want = createHash("sha256").update(view().subarray(data, data + len)).digest("hex");
if (got !== want) {
  console.error(`wasm sha256 mismatch: ${got} != ${want}`);
  process.exit(1);
}
const rounds = Math.max(1, Math.ceil(totalMiB / 16));
let best = 0;
for (let i = 0; i < 3; i++) {
  const t0 = process.hrtime.bigint();
  sha256(data, len, rounds, out);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  best = Math.max(best, (rounds * len) / secs / 1e6);
}
console.log(best.toFixed(0));
