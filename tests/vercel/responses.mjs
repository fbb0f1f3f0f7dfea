// The Vercel AI SDK's default openai() provider (the Responses API) against PolyGenix: each
// call's outcome as one JSON line on stdout, read by tests/test_responses_vercel.py.
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const openai = createOpenAI({ baseURL: process.env.POLYGENIX_BASE_URL, apiKey: process.env.POLYGENIX_KEY });
const model = process.env.POLYGENIX_MODEL;
const say = (name, value) => console.log(JSON.stringify({ name, ...value }));

const first = await generateText({ model: openai(model), prompt: "What is 2+2?" });
const firstId = first.providerMetadata.openai.responseId;
say("generate", { text: first.text, id: firstId, usage: first.usage, finish: first.finishReason });

const streamed = streamText({
  model: openai(model),
  prompt: "And then?",
  providerOptions: { openai: { previousResponseId: firstId } },
});
let text = "";
for await (const piece of streamed.textStream) text += piece;
const meta = await streamed.providerMetadata;
say("stream", { text, id: meta.openai.responseId, usage: await streamed.usage, finish: await streamed.finishReason });

const object = await generateObject({
  model: openai(model),
  schema: z.object({ answer: z.string() }), // what the fake providers answer in JSON
  prompt: "Where?",
});
say("object", { object: object.object });

// A tool loop of two steps: the model calls get_weather, the SDK runs it and sends its result.
const looped = await generateText({
  model: openai(model),
  prompt: "Weather in Paris?",
  tools: {
    get_weather: tool({
      description: "The weather in a city",
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => `sunny in ${city}`,
    }),
  },
  stopWhen: stepCountIs(2),
});
say("tools", { text: looped.text, steps: looped.steps.length, calls: looped.steps[0].toolCalls.map((c) => c.toolName) });
