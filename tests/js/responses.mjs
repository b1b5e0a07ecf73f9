// The Vercel AI SDK with its default OpenAI provider (`openai(model)` speaks the Responses API)
// against a live Fareway.  Run by tests/test_js_clients.py:
//   FAREWAY_URL=http://127.0.0.1:PORT/v1 FAREWAY_KEY=... FAREWAY_MODEL=anthropic/... node responses.mjs
// Prints one JSON line with what each call returned; exits non-zero on any error.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText, tool, stepCountIs } from "ai";
import { z } from "zod";

const openai = createOpenAI({ baseURL: process.env.FAREWAY_URL, apiKey: process.env.FAREWAY_KEY });
const model = openai(process.env.FAREWAY_MODEL);

const calls = [];
const weather = tool({
  description: "Weather for a city",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => {
    calls.push(city);
    return { city, forecast: "sunny", celsius: 21 };
  },
});

const out = {};

const plain = await generateText({ model, prompt: "echo: hello from vercel" });
out.generateText = { text: plain.text, finishReason: plain.finishReason, usage: plain.usage };

const streamed = streamText({ model, prompt: "echo: streamed from vercel" });
let chunks = 0;
for await (const delta of streamed.textStream) {
  if (delta) chunks += 1;
}
out.streamText = { text: await streamed.text, chunks, finishReason: await streamed.finishReason };

const withTool = await generateText({
  model,
  prompt: "What is the weather in Paris? Use get_weather.",
  tools: { get_weather: weather },
  stopWhen: stepCountIs(3),
});
out.toolCall = {
  steps: withTool.steps.length,
  toolCalls: withTool.steps.flatMap((s) => s.toolCalls.map((c) => ({ name: c.toolName, input: c.input }))),
  toolResults: withTool.steps.flatMap((s) => s.toolResults.map((r) => r.output)),
  executed: calls,
  text: withTool.text,
  finishReason: withTool.finishReason,
};

const streamedTool = streamText({
  model,
  prompt: "What is the weather in Rome? Use get_weather.",
  tools: { get_weather: weather },
  stopWhen: stepCountIs(3),
});
const parts = [];
for await (const part of streamedTool.fullStream) {
  if (part.type === "error") throw part.error;
  parts.push(part.type);
}
const streamedSteps = await streamedTool.steps;
out.streamToolCall = {
  toolCalls: streamedSteps.flatMap((s) => s.toolCalls.map((c) => ({ name: c.toolName, input: c.input }))),
  steps: streamedSteps.length,
  text: await streamedTool.text,
  partTypes: [...new Set(parts)],
};

console.log(JSON.stringify(out));
