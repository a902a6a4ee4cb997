"""A Gemini chat that answers sales questions with the tools of the sales server, over SSH or HTTP.

The server's MCP tools become Gemini function declarations (their input schemas converted by
:func:`gemini_json_schema`); each function call the model makes is run on the server with the MCP
SDK's client and its result sent back, until the model answers in text::

    export GEMINI_API_KEY=...            # or GOOGLE_API_KEY; read from the environment only
    python -m examples.gemini_client_ssh --profile demo "top 5 products in Dallas?"
    python -m examples.gemini_client_ssh --profile demo          # interactive: one question per line
    python -m examples.gemini_client_ssh --local --list-tools    # the declarations; no key needed
    MCP_API_KEY=... python -m examples.gemini_client_ssh --url https://sales.example.com/mcp "..."

Tool calls are shown on stderr as they happen; the answer goes to stdout. The function-calling loop
is ours (the SDK's automatic function calling is off) so every call is visible and bounded by
``--max-rounds``. The chat takes its Gemini client as a parameter, so tests script the model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio
import anyio.to_thread
from google.genai import types
from mcp_types import CallToolResult, ImageContent, Tool
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from examples._transport import (
    Server,
    add_server_options,
    describe_error,
    launch_from_args,
    leaf_exceptions,
    open_client,
    print_error,
    quiet_sdk_logging,
    tool_text,
)

# Google's alias for its current stable Flash model: a pinned name (gemini-X.Y-flash) is retired in time
# and then answers 404 for everyone who kept the default.
DEFAULT_MODEL = "gemini-flash-latest"
MODEL_ENV = "GEMINI_MODEL"
API_KEY_ENVS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
DEFAULT_MAX_ROUNDS = 8
CLIENT_NAME = "gemini-example"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

# Gemini's rule for function names.
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")

SYSTEM_INSTRUCTION = """\
You answer questions about a company's sales data. Use the tools to look the numbers up; never invent
them. Prefer exact operation names from list_operations when a name is ambiguous. Answer concisely,
with the numbers that matter, and say which period they cover."""


class SchemaError(ValueError):
    """A tool's input schema cannot be expressed as a Gemini function declaration."""


class ChatError(Exception):
    """The conversation cannot go on (the model gave no answer, or looped on tools); one line."""


# --- schema conversion: MCP tool input schema (JSON Schema) -> Gemini function declaration ----------

# Keywords Gemini's JSON Schema support understands, copied through after their subschemas are converted.
_PLAIN_KEYWORDS = (
    "format",
    "description",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "propertyOrdering",
)
# Constraints Gemini does not take: kept for the model as words in the description instead of dropped.
_HINTED_KEYWORDS = {
    "exclusiveMinimum": "greater than {}",
    "exclusiveMaximum": "less than {}",
    "multipleOf": "a multiple of {}",
    "uniqueItems": "items must be unique",
}
# Keywords that only apply to one JSON type: when a node allows several types, they go with their type.
_TYPE_KEYWORDS = {
    "string": ("format", "enum", "minLength", "maxLength", "pattern"),
    "number": ("format", "enum", "minimum", "maximum"),
    "integer": ("format", "enum", "minimum", "maximum"),
    "array": ("items", "prefixItems", "minItems", "maxItems"),
    "object": ("properties", "required", "additionalProperties", "minProperties", "maxProperties"),
}


def gemini_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Rewrite a tool's input schema into the JSON Schema Gemini accepts as ``parameters_json_schema``.

    Nothing the model needs is lost: nested objects, arrays (and tuples), enums and ``const``,
    ``anyOf``/``oneOf`` unions (pydantic's ``X | None`` is ``anyOf [X, null]``), type lists, defaults,
    descriptions and bounds are kept. Local ``$ref``s are inlined (a recursive one becomes an open
    object whose description says so), ``allOf`` parts are merged, constraints Gemini does not take
    become words in the description, and decorations it does not need (``title``, ``$schema``,
    ``examples``...) are dropped.

    Raises:
        SchemaError: The schema is not an object schema, or has a ``$ref`` that cannot be resolved.
    """
    root = _Converter(schema).convert(schema, "#", ())
    if root.get("type", "object") != "object":
        raise SchemaError(f"a tool's input schema must describe an object, not {root.get('type')!r}")
    root["type"] = "object"
    root.setdefault("properties", {})
    return root


class _Converter:
    """One schema's conversion; holds the root for ``$ref`` lookups."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def convert(self, node: Any, path: str, refs: tuple[str, ...]) -> dict[str, Any]:
        if node is True:
            return {}
        if not isinstance(node, Mapping):
            raise SchemaError(f"{path}: expected a schema object, got {type(node).__name__}")
        out: dict[str, Any] = {}
        if "$ref" in node:
            out = self._resolve(node["$ref"], path, refs)
        for index, part in enumerate(node.get("allOf", ())):
            _merge(out, self.convert(part, f"{path}/allOf/{index}", refs))
        # A node's own keywords win over what it references (a field's description over its type's);
        # properties and required lists add up.
        _merge(out, self._convert_own(node, path, refs), override=True)
        if "required" in out and "properties" in out:
            out["required"] = [name for name in dict.fromkeys(out["required"]) if name in out["properties"]]
        return out

    def _convert_own(self, node: Mapping[str, Any], path: str, refs: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        kind = node.get("type")
        if isinstance(kind, list):
            kinds = [str(k) for k in kind]
            if len(kinds) > 1:
                return self._split_types(node, kinds, path, refs)
            kind = kinds[0] if kinds else None
        if kind is not None:
            out["type"] = kind
        for key in _PLAIN_KEYWORDS:
            if key in node:
                out[key] = node[key]
        if "const" in node:
            out["enum"] = [node["const"]]
        # `is not False`: a bound of 0 is a real constraint, `uniqueItems: false` is none.
        hinted = [k for k in _HINTED_KEYWORDS if k in node and node[k] is not False and node[k] is not None]
        _add_note(out, [_HINTED_KEYWORDS[k].format(node[k]) for k in hinted])
        if isinstance(node.get("properties"), Mapping):
            out["properties"] = {
                name: self.convert(sub, f"{path}/properties/{name}", refs)
                for name, sub in node["properties"].items()
            }
        if isinstance(node.get("required"), list):
            out["required"] = [str(name) for name in node["required"]]
        if "additionalProperties" in node:
            extra = node["additionalProperties"]
            if not isinstance(extra, bool):
                extra = self.convert(extra, f"{path}/additionalProperties", refs)
            out["additionalProperties"] = extra
        items = node.get("items")
        if isinstance(items, list):  # the old tuple form
            out["prefixItems"] = [self.convert(s, f"{path}/items/{i}", refs) for i, s in enumerate(items)]
        elif items is not None:
            out["items"] = self.convert(items, f"{path}/items", refs)
        if isinstance(node.get("prefixItems"), list):
            out["prefixItems"] = [
                self.convert(s, f"{path}/prefixItems/{i}", refs) for i, s in enumerate(node["prefixItems"])
            ]
        branches = [*node.get("anyOf", ()), *node.get("oneOf", ())]  # Gemini reads oneOf as anyOf anyway
        if branches:
            converted: list[dict[str, Any]] = []
            for index, branch in enumerate(branches):
                sub = self.convert(branch, f"{path}/anyOf/{index}", refs)
                # Flatten nested unions, so `(A | B) | None` reads as one anyOf.
                converted.extend(sub["anyOf"] if set(sub) == {"anyOf"} else [sub])
            if len(converted) == 1:
                _merge(out, converted[0])
            else:
                out["anyOf"] = converted
        return out

    def _split_types(
        self, node: Mapping[str, Any], kinds: list[str], path: str, refs: tuple[str, ...]
    ) -> dict[str, Any]:
        """``{"type": ["string", "null"], ...}`` -> ``anyOf`` of one branch per type, keywords by type."""
        typed = {key for keys in _TYPE_KEYWORDS.values() for key in keys}
        shared = {k: v for k, v in node.items() if k != "type" and k not in typed}
        out = self._convert_own(shared, path, refs)
        branches = [
            {"type": k, **{key: node[key] for key in _TYPE_KEYWORDS.get(k, ()) if key in node}} for k in kinds
        ]
        out["anyOf"] = [self._convert_own(branch, path, refs) for branch in branches]
        return out

    def _resolve(self, ref: Any, path: str, refs: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise SchemaError(f"{path}: only local references (#/...) can be resolved, not {ref!r}")
        if ref in refs:
            name = ref.rsplit("/", 1)[-1]
            return {"type": "object", "description": f"A nested {name} (same shape as the enclosing {name})."}
        target: Any = self.root
        for part in ref[2:].split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or key not in target:
                raise SchemaError(f"{path}: reference {ref!r} points at nothing")
            target = target[key]
        return self.convert(target, ref, (*refs, ref))


def _add_note(node: dict[str, Any], notes: list[str]) -> None:
    """Append words (for constraints the target cannot express) to a node's description."""
    if notes:
        text = "; ".join(notes)
        described = node.get("description")
        node["description"] = f"{described} ({text})" if described else text[:1].upper() + text[1:]


def _merge(into: dict[str, Any], part: Mapping[str, Any], *, override: bool = False) -> None:
    """Merge schema ``part`` into ``into``: properties and required add up; for any other keyword the
    value already there stays, unless ``override``."""
    for key, value in part.items():
        if key == "properties" and isinstance(into.get(key), dict):
            into[key] = {**into[key], **value} if override else {**value, **into[key]}
        elif key == "required" and isinstance(into.get(key), list):
            into[key] = [*into[key], *(name for name in value if name not in into[key])]
        elif override:
            into[key] = value
        else:
            into.setdefault(key, value)


def openapi_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Rewrite a :func:`gemini_json_schema` result into the OpenAPI subset of ``types.Schema``.

    For google-genai releases without ``parameters_json_schema``: types become upper case, a ``null``
    branch of a union becomes ``nullable``, a one-branch union collapses; non-string enums, tuple items
    and free-form mappings (which the subset cannot hold) are described in words. Keys are
    ``types.Schema`` field names.
    """
    out: dict[str, Any] = {}
    notes: list[str] = []
    branches = [b for b in schema.get("anyOf", ()) if b.get("type") != "null"]
    if "anyOf" in schema and len(branches) < len(schema["anyOf"]):
        out["nullable"] = True
    if len(branches) == 1:
        merged = dict(schema)
        merged.pop("anyOf")
        _merge(merged, branches[0])
        inner = openapi_schema(merged)
        return {**inner, **out}
    if branches:
        out["any_of"] = [openapi_schema(b) for b in branches]
    if isinstance(schema.get("type"), str):
        out["type"] = schema["type"].upper()
    for key, field in (
        ("format", "format"),
        ("description", "description"),
        ("default", "default"),
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("minLength", "min_length"),
        ("maxLength", "max_length"),
        ("pattern", "pattern"),
        ("minItems", "min_items"),
        ("maxItems", "max_items"),
        ("minProperties", "min_properties"),
        ("maxProperties", "max_properties"),
        ("required", "required"),
        ("propertyOrdering", "property_ordering"),
    ):
        if key in schema:
            out[field] = schema[key]
    if "enum" in schema:
        values = schema["enum"]
        if all(isinstance(v, str) for v in values):
            out["enum"] = list(values)
            out.setdefault("type", "STRING")
        else:
            notes.append("one of " + ", ".join(json.dumps(v) for v in values))
    if "properties" in schema:
        out["properties"] = {name: openapi_schema(sub) for name, sub in schema["properties"].items()}
    if isinstance(schema.get("additionalProperties"), Mapping):
        notes.append("any property names")  # a mapping; the subset can only list named properties
    if "items" in schema:
        out["items"] = openapi_schema(schema["items"])
    elif "prefixItems" in schema:
        notes.append(f"exactly {len(schema['prefixItems'])} items")
    _add_note(out, notes)
    return out


def supports_json_schema() -> bool:
    """Whether the installed google-genai can send plain JSON Schema (``parameters_json_schema``)."""
    return "parameters_json_schema" in types.FunctionDeclaration.model_fields


def function_declaration(tool: Tool, *, json_schema: bool | None = None) -> types.FunctionDeclaration:
    """Turn one MCP tool into a Gemini function declaration.

    Args:
        tool: The tool as listed by the server.
        json_schema: Send plain JSON Schema (default: when the installed google-genai supports it) or
            the older OpenAPI subset.

    Raises:
        SchemaError: The name is not a valid Gemini function name, or the schema cannot be converted.
    """
    if not _FUNCTION_NAME.fullmatch(tool.name):
        raise SchemaError(f"tool name {tool.name!r} is not a valid Gemini function name")
    try:
        parameters = gemini_json_schema(tool.input_schema)
    except SchemaError as exc:
        raise SchemaError(f"tool {tool.name}: {exc}") from None
    declaration = types.FunctionDeclaration(name=tool.name, description=tool.description or tool.title or "")
    if not parameters["properties"]:
        return declaration  # Gemini's form for a function without parameters: none at all
    if supports_json_schema() if json_schema is None else json_schema:
        declaration.parameters_json_schema = parameters
    else:
        fields = types.Schema.model_fields  # older releases lack some keywords: leave those out
        declaration.parameters = types.Schema.model_validate(
            _only_fields(openapi_schema(parameters), fields.keys())
        )
    return declaration


def _only_fields(node: dict[str, Any], fields: Any) -> dict[str, Any]:
    known = set(fields)
    out = {k: v for k, v in node.items() if k in known}
    if "properties" in out:
        out["properties"] = {n: _only_fields(s, known) for n, s in out["properties"].items()}
    if "items" in out:
        out["items"] = _only_fields(out["items"], known)
    if "any_of" in out:
        out["any_of"] = [_only_fields(s, known) for s in out["any_of"]]
    return out


def coerce_arguments(value: Any, schema: Mapping[str, Any] | None) -> Any:
    """Give integer parameters whole numbers: the model's JSON numbers may arrive as ``5.0``.

    ``schema`` is a converted schema (:func:`gemini_json_schema`: no references left to follow).
    """
    if not schema:
        return value
    if isinstance(value, float) and value.is_integer() and _allows("integer", schema):
        return int(value)
    if isinstance(value, dict):
        shape = _branch("object", schema)
        props = shape.get("properties")
        if isinstance(props, Mapping):
            return {k: coerce_arguments(v, props.get(k)) for k, v in value.items()}
    if isinstance(value, list):
        items = _branch("array", schema).get("items")
        if isinstance(items, Mapping):
            return [coerce_arguments(v, items) for v in value]
    return value


def _allows(kind: str, schema: Mapping[str, Any]) -> bool:
    declared = schema.get("type")
    if declared == kind or (isinstance(declared, list) and kind in declared):
        return True
    return any(isinstance(b, Mapping) and _allows(kind, b) for b in schema.get("anyOf", ()))


def _branch(kind: str, schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The part of ``schema`` describing values of JSON type ``kind`` (a union's matching branch)."""
    if schema.get("type") == kind or "anyOf" not in schema:
        return schema
    return next((b for b in schema["anyOf"] if isinstance(b, Mapping) and b.get("type") == kind), schema)


# --- the chat loop --------------------------------------------------------------------------------


class ModelsApi(Protocol):
    """The one method of ``genai.Client().aio.models`` the chat uses (tests pass a scripted fake)."""

    async def generate_content(
        self, *, model: str, contents: list[types.Content], config: types.GenerateContentConfig
    ) -> types.GenerateContentResponse: ...


class ToolCaller(Protocol):
    """What the chat needs of an MCP client: ``mcp.Client`` is one."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, read_timeout_seconds: float | None = None
    ) -> CallToolResult: ...


def function_response(result: CallToolResult) -> dict[str, Any]:
    """The ``response`` object sent back to the model for one tool result.

    The structured result (every number) goes as ``result`` with the server's short text as
    ``summary``; a tool error goes as ``error`` (its message says what to change, so the model can
    retry). Images are not sent: this client shows text only.
    """
    text = tool_text(result)
    if result.is_error:
        return {"error": text or "the tool failed without a message"}
    response: dict[str, Any] = (
        {"result": result.structured_content, "summary": text}
        if result.structured_content is not None
        else {"result": text}
    )
    images = sum(isinstance(block, ImageContent) for block in result.content)
    if images:
        response["note"] = f"{images} image(s) left out; describe the numbers instead"
    return response


OnCall = Callable[[str, dict[str, Any]], None]
OnResult = Callable[[str, dict[str, Any], float], None]


class GeminiChat:
    """A conversation with Gemini in which the model may call the MCP server's tools.

    Args:
        models: ``genai.Client(...).aio.models``, or a fake with the same ``generate_content``.
        tools: A connected MCP client.
        tool_list: The server's tools (from ``list_tools``).
        model: The Gemini model name.
        instructions: The server's own instructions, added to the system instruction.
        max_rounds: Model requests per question before giving up (each may call several tools).
        call_timeout: Seconds one tool call may take.
        on_call, on_result: Called as each tool call starts and ends (the CLI prints them).
    """

    def __init__(
        self,
        models: ModelsApi,
        tools: ToolCaller,
        tool_list: Sequence[Tool],
        *,
        model: str = DEFAULT_MODEL,
        instructions: str | None = None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        call_timeout: float | None = None,
        on_call: OnCall | None = None,
        on_result: OnResult | None = None,
    ) -> None:
        self.models = models
        self.tools = tools
        self.model = model
        self.max_rounds = max_rounds
        self.call_timeout = call_timeout
        self.on_call = on_call
        self.on_result = on_result
        self.schemas = {tool.name: tool.input_schema for tool in tool_list}
        system = SYSTEM_INSTRUCTION + (f"\n\nThe sales server says:\n{instructions}" if instructions else "")
        self.config = types.GenerateContentConfig(
            system_instruction=system,
            tools=[types.Tool(function_declarations=[function_declaration(t) for t in tool_list])],
            # Our loop runs the tools: the SDK must not try to (it cannot reach them anyway).
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        self.history: list[types.Content] = []

    async def ask(self, question: str) -> str:
        """Send a question; run the model's tool calls until it answers; return the answer text.

        On failure the question and its partial exchange are dropped, so the chat can go on.

        Raises:
            ChatError: The model stopped without an answer, or asked for tools ``max_rounds`` times.
            MCPError: The server connection failed mid-call (it cannot be used any more).
            google.genai.errors.APIError: The Gemini API refused the request.
        """
        mark = len(self.history)
        self.history.append(types.Content(role="user", parts=[types.Part.from_text(text=question)]))
        try:
            for _ in range(self.max_rounds):
                response = await self.models.generate_content(
                    model=self.model, contents=list(self.history), config=self.config
                )
                content = _answer_content(response)
                self.history.append(content)  # verbatim: Gemini wants its thought signatures back
                calls = [part.function_call for part in content.parts or () if part.function_call]
                if not calls:
                    return _text_of(content, response)
                parts = [await self._run(call) for call in calls]
                self.history.append(types.Content(role="user", parts=parts))
            rounds = f"{self.max_rounds} request{'s' if self.max_rounds != 1 else ''}"
            raise ChatError(
                f"the model still wanted tools after {rounds} without answering;"
                " ask a narrower question or raise --max-rounds"
            )
        except BaseException:
            del self.history[mark:]
            raise

    async def _run(self, call: types.FunctionCall) -> types.Part:
        name = call.name or ""
        arguments = coerce_arguments(dict(call.args or {}), self.schemas.get(name))
        if self.on_call:
            self.on_call(name, arguments)
        started = time.monotonic()
        if name in self.schemas:
            result = await self.tools.call_tool(name, arguments, read_timeout_seconds=self.call_timeout)
            response = function_response(result)
        else:  # the model made a name up: tell it, it will usually correct itself
            response = {"error": f"there is no tool named {name!r}; the tools are {', '.join(self.schemas)}"}
        if self.on_result:
            self.on_result(name, response, time.monotonic() - started)
        return types.Part(function_response=types.FunctionResponse(id=call.id, name=name, response=response))


def _answer_content(response: types.GenerateContentResponse) -> types.Content:
    if not response.candidates or response.candidates[0].content is None:
        feedback = response.prompt_feedback
        reason = feedback.block_reason if feedback else None
        raise ChatError(f"the model returned no answer{f' (blocked: {reason})' if reason else ''}")
    content = response.candidates[0].content
    if content.role is None:
        content = content.model_copy(update={"role": "model"})
    return content


def _text_of(content: types.Content, response: types.GenerateContentResponse) -> str:
    text = "".join(part.text for part in content.parts or () if part.text and not part.thought).strip()
    if not text:
        reason = response.candidates[0].finish_reason if response.candidates else None
        raise ChatError(f"the model stopped without an answer (finish reason: {reason})")
    return text


# --- command line ---------------------------------------------------------------------------------


def api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """The Gemini API key from GEMINI_API_KEY or GOOGLE_API_KEY (never from a file or an argument)."""
    env = os.environ if environ is None else environ
    return next((env[name].strip() for name in API_KEY_ENVS if env.get(name, "").strip()), None)


def build_parser() -> argparse.ArgumentParser:
    """The command line: server options, then the chat's own."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.gemini_client_ssh",
        description="Ask Gemini about your sales; it answers with the sales server's tools.",
    )
    parser.add_argument("question", nargs="*", help="the question; none starts an interactive chat")
    add_server_options(parser)
    parser.add_argument(
        "--model",
        default=os.environ.get(MODEL_ENV) or DEFAULT_MODEL,
        help=f"Gemini model (default ${MODEL_ENV} or {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--max-rounds",
        type=int,
        default=DEFAULT_MAX_ROUNDS,
        metavar="N",
        help=f"model requests per question before giving up (default {DEFAULT_MAX_ROUNDS})",
    )
    parser.add_argument(
        "--list-tools",
        action="store_true",
        help="print the Gemini function declarations made from the server's tools, then exit (no key needed)",
    )
    parser.add_argument("--verbose", action="store_true", help="also show the MCP SDK's own log records")
    return parser


def _show_call(err: Console) -> OnCall:
    def show(name: str, arguments: dict[str, Any]) -> None:
        shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
        err.print(f"[cyan]→ {escape(name)}[/]({escape(shown)})", soft_wrap=True)

    return show


def _show_result(err: Console) -> OnResult:
    def show(name: str, response: dict[str, Any], seconds: float) -> None:
        if "error" in response:
            err.print(f"  [red]← {escape(name)} error[/] ({seconds:.1f} s): {escape(response['error'])}")
            return
        first = str(response.get("summary") or response.get("result") or "").splitlines()
        err.print(f"  [green]← {escape(name)}[/] ({seconds:.1f} s): {escape(first[0] if first else 'ok')}")

    return show


async def list_tools(launch: Server, args: argparse.Namespace) -> None:
    """Print the function declarations made from the server's tools, as JSON on stdout."""
    async with open_client(launch, connect_timeout=args.connect_timeout, client_name=CLIENT_NAME) as client:
        tools = (await client.list_tools()).tools
    declarations = [function_declaration(tool).model_dump(mode="json", exclude_none=True) for tool in tools]
    print(json.dumps(declarations, indent=2, ensure_ascii=False))


async def chat(launch: Server, args: argparse.Namespace, key: str, out: Console, err: Console) -> None:
    """Connect to the server and to Gemini, then answer the question (or each line typed)."""
    from google import genai  # the client (and its HTTP stack) only when there is a key to use

    async with open_client(launch, connect_timeout=args.connect_timeout, client_name=CLIENT_NAME) as client:
        tools = (await client.list_tools()).tools
        where, model = escape(launch.describe()), escape(args.model)
        err.print(f"[green]connected[/] to {where}: {len(tools)} tools; model {model}")
        async with genai.Client(api_key=key).aio as gemini:
            conversation = GeminiChat(
                gemini.models,
                client,
                tools,
                model=args.model,
                instructions=client.instructions,
                max_rounds=args.max_rounds,
                call_timeout=args.timeout,
                on_call=_show_call(err),
                on_result=_show_result(err),
            )
            if args.question:
                _print_answer(out, await conversation.ask(" ".join(args.question)))
                return
            err.print("Ask about your sales; an empty line or Ctrl-D ends the chat.")
            while question := (await anyio.to_thread.run_sync(_read_line)).strip():
                try:
                    _print_answer(out, await conversation.ask(question))
                except ChatError as exc:
                    print_error(err, str(exc))


def _read_line() -> str:
    try:
        return input("you> ")
    except EOFError:
        return ""


def _print_answer(out: Console, text: str) -> None:
    # Markdown reads well in a terminal; piped output stays the model's exact text.
    if out.is_terminal:
        out.print(Markdown(text))
    else:
        print(text, flush=True)


def unknown_model(model: str) -> str:
    """What to do when the Gemini API has no model of that name (it answers 404 NOT_FOUND)."""
    return (
        f"the Gemini API has no model '{model}' (or not for this key): pick another with --model NAME or"
        f" ${MODEL_ENV}, or leave both unset for {DEFAULT_MODEL}, Google's current Flash model"
    )


def _describe(exc: BaseException, launch: Server | None, model: str = DEFAULT_MODEL) -> str:
    """One line for any failure: ours, the Gemini API's, or the server connection's."""
    from google.genai import errors as genai_errors

    for leaf in leaf_exceptions(exc):
        if isinstance(leaf, ChatError | SchemaError):
            return str(leaf)
        if isinstance(leaf, genai_errors.APIError) and leaf.code == 404:  # the only thing the chat names
            return unknown_model(model)
        if isinstance(leaf, genai_errors.APIError):
            detail = " ".join(str(part) for part in (leaf.code, leaf.status, leaf.message) if part)
            return f"the Gemini API refused the request: {detail}"
    return describe_error(exc, launch)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chat; return the exit code (0 ok, 1 chat failed, 2 usage, 3 server unreachable)."""
    args = build_parser().parse_args(argv)
    quiet_sdk_logging(args.verbose)
    out, err = Console(), Console(stderr=True)
    key = None if args.list_tools else api_key()
    if key is None and not args.list_tools:
        print_error(
            err,
            f"no Gemini API key: set {' or '.join(API_KEY_ENVS)} in the environment"
            " (--list-tools works without one)",
        )
        return EXIT_USAGE
    launch: Server | None = None
    try:
        launch = launch_from_args(args)
        if args.list_tools:
            anyio.run(list_tools, launch, args)
        else:
            assert key is not None
            anyio.run(chat, launch, args, key, out, err)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return 130
    except Exception as exc:  # one line for every failure; the key is never part of any message
        print_error(err, _describe(exc, launch, args.model))
        if launch is None:
            return EXIT_USAGE
        ours = any(isinstance(e, ChatError | SchemaError) for e in leaf_exceptions(exc))
        return EXIT_FAILED if ours else EXIT_UNREACHABLE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
