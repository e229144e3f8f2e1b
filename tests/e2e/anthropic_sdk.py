"""Drives the gateway's Anthropic endpoint with the official `anthropic` SDK.

Usage: anthropic_sdk.py CASE, with GATEWAY_URL and GATEWAY_KEY set. Prints
one JSON object with what the SDK saw; the Rust test asserts on it.
"""

import json
import os
import sys

import anthropic

MODEL = "claude-sonnet-4-5-20250929"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client(key=None):
    return anthropic.Anthropic(
        base_url=os.environ["GATEWAY_URL"],
        api_key=key or os.environ["GATEWAY_KEY"],
        max_retries=0,
        timeout=20,
    )


def blocks(content):
    out = []
    for b in content:
        if b.type == "text":
            out.append(["text", b.text])
        elif b.type == "thinking":
            out.append(["thinking", b.thinking])
        elif b.type == "tool_use":
            out.append(["tool_use", b.id, b.name, b.input])
        else:
            out.append([b.type])
    return out


def usage_of(m):
    return [m.usage.input_tokens, m.usage.output_tokens]


def create():
    m = client().messages.create(
        model=MODEL,
        max_tokens=1024,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Say hello"}],
    )
    return {
        "id": m.id,
        "type": m.type,
        "role": m.role,
        "model": m.model,
        "blocks": blocks(m.content),
        "stop_reason": m.stop_reason,
        "usage": usage_of(m),
    }


def stream():
    with client().messages.stream(
        model=MODEL,
        max_tokens=1024,
        messages=[{"role": "user", "content": "scenario:stream_think Say hello"}],
    ) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    return {
        "pieces": pieces,
        "id": final.id,
        "model": final.model,
        "blocks": blocks(final.content),
        "stop_reason": final.stop_reason,
        "usage": usage_of(final),
    }


def tools():
    c = client()
    messages = [{"role": "user", "content": "scenario:tools What is the weather in Paris?"}]
    first = c.messages.create(model=MODEL, max_tokens=1024, tools=[WEATHER_TOOL], messages=messages)
    use = next(b for b in first.content if b.type == "tool_use")
    result = f"18C and sunny in {use.input['city']}"
    messages.append({"role": "assistant", "content": first.content})
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": result}]}
    )
    second = c.messages.create(model=MODEL, max_tokens=1024, tools=[WEATHER_TOOL], messages=messages)
    return {
        "first": blocks(first.content),
        "stop_reasons": [first.stop_reason, second.stop_reason],
        "second": blocks(second.content),
        "usage": [usage_of(first), usage_of(second)],
    }


def stream_tools():
    """The tool loop as Claude Code runs it: every turn streamed, the final
    message's content sent back as the assistant turn."""
    c = client()
    messages = [{"role": "user", "content": "scenario:tools What is the weather in Paris?"}]
    turns = []
    for _ in range(2):
        with c.messages.stream(model=MODEL, max_tokens=1024, tools=[WEATHER_TOOL], messages=messages) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        turns.append({"text": text, "blocks": blocks(final.content), "stop_reason": final.stop_reason})
        uses = [b for b in final.content if b.type == "tool_use"]
        if not uses:
            break
        messages.append({"role": "assistant", "content": final.content})
        results = [
            {"type": "tool_result", "tool_use_id": u.id, "content": f"18C and sunny in {u.input['city']}"}
            for u in uses
        ]
        messages.append({"role": "user", "content": results})
    return {"turns": turns}


def count_tokens():
    c = client()
    counts = []
    for text in ["Hello", "Hello, how are you today? " * 40]:
        r = c.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": text}])
        counts.append(r.input_tokens)
    return {"counts": counts}


def errors():
    out = {}
    try:
        client("wrong-key").messages.create(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    except anthropic.AuthenticationError as e:
        out["auth"] = [type(e).__name__, e.status_code, e.body["type"], e.body["error"]["type"]]
    try:
        client().messages.create(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "scenario:status:429"}]
        )
    except anthropic.RateLimitError as e:
        out["rate"] = [type(e).__name__, e.status_code, e.response.headers.get("retry-after")]
    try:
        with client().messages.stream(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "scenario:stream_biz:434"}]
        ) as s:
            list(s.text_stream)
    except anthropic.APIStatusError as e:
        out["mid_stream"] = [type(e).__name__, e.body["error"]["type"], e.body["error"]["message"]]
    return out


if __name__ == "__main__":
    cases = {"create": create, "stream": stream, "tools": tools, "stream_tools": stream_tools,
             "count_tokens": count_tokens, "errors": errors}
    print(json.dumps(cases[sys.argv[1]]()))
