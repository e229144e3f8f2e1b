"""Drives the gateway with the official `openai` Python SDK.

Usage: openai_sdk.py CASE, with GATEWAY_URL and GATEWAY_KEY set. Prints one
JSON object with what the SDK saw; the Rust test asserts on it.
"""

import json
import os
import sys

import openai
from openai import OpenAI

client = OpenAI(
    base_url=os.environ["GATEWAY_URL"] + "/v1",
    api_key=os.environ["GATEWAY_KEY"],
    max_retries=0,
    timeout=20,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def usage_of(usage):
    if usage is None:
        return None
    return [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens]


def complete():
    r = client.chat.completions.create(
        model="glm-5", messages=[{"role": "user", "content": "Say hello"}]
    )
    message = r.choices[0].message
    return {
        "id": r.id,
        "role": message.role,
        "content": message.content,
        "reasoning": getattr(message, "reasoning_content", None),
        "finish": r.choices[0].finish_reason,
        "usage": usage_of(r.usage),
    }


def stream():
    deltas, reasoning, args = [], [], {}
    finish, usage, calls = None, None, {}
    chunks = client.chat.completions.create(
        model="glm-5",
        messages=[{"role": "user", "content": "What is the weather?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in chunks:
        if chunk.usage is not None:
            usage = usage_of(chunk.usage)
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                deltas.append(delta.content)
            if getattr(delta, "reasoning_content", None):
                reasoning.append(delta.reasoning_content)
            for call in delta.tool_calls or []:
                if call.id:
                    calls[call.index] = [call.id, call.function.name]
                args[call.index] = args.get(call.index, "") + (call.function.arguments or "")
            if choice.finish_reason:
                finish = choice.finish_reason
    return {
        "deltas": deltas,
        "text": "".join(deltas),
        "reasoning": "".join(reasoning),
        "tool_calls": [calls[i] + [json.loads(args[i])] for i in sorted(calls)],
        "finish": finish,
        "usage": usage,
    }


def tools():
    messages = [{"role": "user", "content": "scenario:tools What is the weather in Paris?"}]
    first = client.chat.completions.create(model="glm-5", messages=messages, tools=[WEATHER_TOOL])
    message = first.choices[0].message
    call = message.tool_calls[0]
    arguments = json.loads(call.function.arguments)
    result = f"18C and sunny in {arguments['city']}"
    messages.append(message)
    messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    second = client.chat.completions.create(model="glm-5", messages=messages, tools=[WEATHER_TOOL])
    return {
        "finish": [first.choices[0].finish_reason, second.choices[0].finish_reason],
        "call": [call.id, call.type, call.function.name, arguments],
        "answer": second.choices[0].message.content,
        "usage": [usage_of(first.usage), usage_of(second.usage)],
    }


def errors():
    out = {"models": [m.id for m in client.models.list()]}
    model = client.models.retrieve("glm-5")
    out["retrieved"] = [model.id, model.object, model.owned_by]
    try:
        client.models.retrieve("no-such-model")
    except openai.NotFoundError as e:
        out["missing"] = [type(e).__name__, e.status_code, e.code]
    try:
        OpenAI(base_url=client.base_url, api_key="wrong-key", max_retries=0).models.list()
    except openai.AuthenticationError as e:
        out["auth"] = [type(e).__name__, e.status_code, e.code]
    try:
        client.chat.completions.create(
            model="glm-5", messages=[{"role": "user", "content": "scenario:status:429"}]
        )
    except openai.RateLimitError as e:
        out["rate"] = [type(e).__name__, e.status_code, e.code, e.response.headers.get("retry-after")]
    try:
        for _ in client.chat.completions.create(
            model="glm-5", messages=[{"role": "user", "content": "scenario:stream_biz:434"}], stream=True
        ):
            pass
    except openai.APIError as e:
        out["mid_stream"] = [type(e).__name__, e.code, e.message]
    return out


if __name__ == "__main__":
    cases = {"complete": complete, "stream": stream, "tools": tools, "errors": errors}
    print(json.dumps(cases[sys.argv[1]]()))
