// A wasi:http 0.2 "hello" component written in JavaScript, built by componentize-js
// (StarlingMonkey). For any request it answers 200 with the body
// "<greeting> from javascript <path-with-query>", where <greeting> is the GREETING
// environment variable if set, else "hello".
//
// It implements wasi:http/incoming-handler@0.2.12 by hand (the world is
// test-programs/wit/world.wit: wasi:http/proxy plus wasi:cli/environment).
import { getEnvironment } from "wasi:cli/environment@0.2.12";
import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from "wasi:http/types@0.2.12";

function greeting() {
  for (const [key, value] of getEnvironment()) {
    if (key === "GREETING") return value;
  }
  return "hello";
}

function handle(request, responseOut) {
  const path = request.pathWithQuery() ?? "/";
  const bytes = new TextEncoder().encode(`${greeting()} from javascript ${path}`);

  const response = new OutgoingResponse(
    Fields.fromList([["content-type", new TextEncoder().encode("text/plain; charset=utf-8")]]),
  );
  response.setStatusCode(200);
  const body = response.body();
  ResponseOutparam.set(responseOut, { tag: "ok", val: response });

  const stream = body.write();
  // blocking-write-and-flush takes at most 4096 bytes per call.
  for (let i = 0; i < bytes.length; i += 4096) {
    stream.blockingWriteAndFlush(bytes.subarray(i, i + 4096));
  }
  // The stream is a child of the body: drop it before finishing the body.
  stream[Symbol.dispose]();
  OutgoingBody.finish(body, undefined);
}

export const incomingHandler = { handle };
