// The `openai` npm package (one streaming chat) and Llama Stack's TypeScript client in its current
// API generation (the whole flow), unchanged, against `corral serve` (run by serve_clients.rs).
//
// Usage: node node_clients.mjs BASE_URL CHAT_MODEL EMBEDDING_MODEL PDF   (BASE_URL ends in /v1)
// Run with NODE_PATH pointing at the node_modules that scripts/fetch-test-clients.sh fills.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { basename } from "node:path";

const require = createRequire(process.env.NODE_PATH + "/");
const OpenAI = require("openai").default;
const LlamaStackClient = require("llama-stack-client").default;
const { toFile } = require("llama-stack-client");

const [baseUrl, chatModel, embeddingModel, pdf] = process.argv.slice(2);

function step(name, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${name} ${detail}`.trimEnd());
  if (!ok) process.exit(1);
}

const prompt = [{ role: "user", content: "The capital city of France is called" }];

// openai (npm): a streamed chat.
const openai = new OpenAI({ baseURL: baseUrl, apiKey: "unused-on-loopback", maxRetries: 0 });
let streamed = "";
let finish = null;
for await (const chunk of await openai.chat.completions.create({
  model: chatModel, messages: prompt, max_tokens: 8, temperature: 0, stream: true,
})) {
  for (const choice of chunk.choices) {
    streamed += choice.delta?.content ?? "";
    finish = choice.finish_reason ?? finish;
  }
}
step("openai npm: streamed chat", streamed.length > 0 && finish !== null, JSON.stringify(streamed));

// llama-stack-client (npm, current API): the whole flow.
const client = new LlamaStackClient({ baseURL: baseUrl.replace(/\/v1$/, ""), maxRetries: 0 });
const models = await client.models.list();
const ids = models.map((m) => m.id ?? m.identifier);
step("llama-stack-client: models.list", ids.includes(chatModel) && ids.includes(embeddingModel), JSON.stringify(ids));
const chat = await client.chat.completions.create({ model: chatModel, messages: prompt, max_tokens: 8, temperature: 0 });
const text = chat.choices[0].message.content;
step("llama-stack-client: chat", typeof text === "string" && text.length > 0, JSON.stringify(text));
let pieces = "";
for await (const chunk of await client.chat.completions.create({
  model: chatModel, messages: prompt, max_tokens: 8, temperature: 0, stream: true,
})) {
  for (const choice of chunk.choices) pieces += choice.delta?.content ?? "";
}
step("llama-stack-client: chat stream", pieces === text, JSON.stringify(pieces));
const tools = [{ type: "function", function: {
  name: "get_weather", description: "The weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
} }];
const withTools = await client.chat.completions.create({
  model: chatModel, messages: [{ role: "user", content: "Weather in Paris?" }], tools, max_tokens: 16, temperature: 0,
});
const message = withTools.choices[0].message;
step("llama-stack-client: chat with tools", Array.isArray(message.tool_calls) || typeof message.content === "string");
const embeddings = await client.embeddings.create({ model: embeddingModel, input: ["a cat", "tax law"] });
step("llama-stack-client: embeddings", embeddings.data.length === 2 && embeddings.data[0].embedding.length === 384);

const bytes = readFileSync(pdf);
const file = await client.files.create({ file: await toFile(bytes, basename(pdf)), purpose: "assistants" });
step("llama-stack-client: files.create", file.bytes === bytes.length, file.id);
const store = await client.vectorStores.create({ name: "glpk" });
const attached = await client.vectorStores.files.create(store.id, { file_id: file.id });
step("llama-stack-client: vectorStores.files.create", attached.status === "completed", JSON.stringify(attached.last_error));
const found = await client.vectorStores.search(store.id, { query: "CNF satisfiability", max_num_results: 3 });
step("llama-stack-client: vectorStores.search", found.data.length > 0 && found.data[0].file_id === file.id, `${found.data.length} hits`);
const response = await client.responses.create({
  model: chatModel, input: "What is CNF satisfiability?", temperature: 0, max_output_tokens: 16,
  tools: [{ type: "file_search", vector_store_ids: [store.id] }],
});
const kinds = response.output.map((item) => item.type);
step("llama-stack-client: responses.create with file_search",
  kinds[0] === "file_search_call" && response.output[0].results[0].file_id === file.id && kinds[1] === "message",
  JSON.stringify(kinds));
await client.vectorStores.delete(store.id);
await client.files.delete(file.id);
console.log("all steps passed");
