// Reads JSON lines {token, body, url, current, next} on stdin; prints "ok" or "fail:<reason>" per line.
import { Receiver } from "@upstash/qstash";
import { createInterface } from "node:readline";

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  const receiver = new Receiver({ currentSigningKey: c.current, nextSigningKey: c.next });
  try {
    const valid = await receiver.verify({ signature: c.token, body: c.body, url: c.url, clockTolerance: c.tolerance ?? 0 });
    console.log(valid ? "ok" : "fail:false");
  } catch (e) {
    console.log("fail:" + String(e && e.message).replace(/\n/g, " "));
  }
}
