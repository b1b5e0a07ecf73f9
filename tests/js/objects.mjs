// The Vercel AI SDK's structured output against a live Fareway: generateObject and streamObject
// with a zod schema (the default OpenAI provider speaks the Responses API: text.format json_schema),
// for each upstream dialect.  Run by tests/test_js_clients.py:
//   FAREWAY_URL=http://127.0.0.1:PORT/v1 FAREWAY_KEY=... FAREWAY_MODEL=gemini/... node objects.mjs
// Prints one JSON line with the objects; exits non-zero on any error (a schema mismatch included).
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, streamObject } from "ai";
import { z } from "zod";

const openai = createOpenAI({ baseURL: process.env.FAREWAY_URL, apiKey: process.env.FAREWAY_KEY });
const model = openai(process.env.FAREWAY_MODEL);

const ticket = z.object({
  title: z.string(),
  severity: z.enum(["low", "high"]),
  parts: z.array(z.object({ name: z.string(), qty: z.number().int().min(1).max(5) })).min(1),
});

const out = {};
const made = await generateObject({ model, schema: ticket, prompt: "file a ticket" });
out.generateObject = { object: made.object, finishReason: made.finishReason };

const streamed = streamObject({ model, schema: ticket, prompt: "file another ticket" });
for await (const partial of streamed.partialObjectStream) {
  void partial;
}
out.streamObject = { object: await streamed.object };

console.log(JSON.stringify(out));
