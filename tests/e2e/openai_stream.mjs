// Drives the gateway with the official `openai` npm package: one streamed
// chat completion, text assembled from the deltas. GATEWAY_URL and
// GATEWAY_KEY must be set; prints one JSON object for the Rust test.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: `${process.env.GATEWAY_URL}/v1`,
  apiKey: process.env.GATEWAY_KEY,
  maxRetries: 0,
  timeout: 20_000,
});

const stream = await client.chat.completions.create({
  model: "glm-5",
  messages: [{ role: "user", content: "scenario:stream_text Say hello" }],
  stream: true,
  stream_options: { include_usage: true },
});

const deltas = [];
let finish = null;
let usage = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens];
  for (const choice of chunk.choices) {
    if (choice.delta.content) deltas.push(choice.delta.content);
    if (choice.finish_reason) finish = choice.finish_reason;
  }
}
console.log(JSON.stringify({ deltas, text: deltas.join(""), finish, usage }));
