"""The examples, run for real: the plain MCP client and the Gemini chat against real ``mcp_sales``
servers (subprocesses, or in-process for the schema checks), with answers checked against pandas.

The Gemini API is the one thing faked, at its boundary: an object with ``generate_content`` that
returns scripted responses (function calls, then text) and records every request it was sent.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import pandas as pd
import pytest
from google import genai
from google.genai import types
from mcp import Client
from mcp_types import CallToolResult, ImageContent, TextContent, Tool
from pydantic import BaseModel, Field

from examples import gemini_client_ssh as gem
from examples._transport import local_launch, open_client
from mcp_sales.sample import generate_sample
from mcp_sales.server import ServerConfig, build_server
from provision.clients.entries import EntryInputs, is_mcpctl_entry, proxy_entry, ssh_entry
from provision.clients.system import LocalSystem
from provision.profiles import Profile, known_hosts_path, save_profile
from provision.ssh.hostkeys import pin_host_key

if TYPE_CHECKING:
    from tests.conftest import SshdServer

REPO = Path(__file__).resolve().parents[2]
FAST = 60  # seconds: bound on a run without a forecast (server start, a few queries)
SLOW = 180  # seconds: bound on a run that fits a Prophet model
TOOLS = {
    "top_n_products",
    "list_operations",
    "list_products",
    "dataset_summary",
    "sales_over_time",
    "forecast_sales",
}
KEY = "test-key-4f1d9a"  # a fake key: it must never show up in any output


# --- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sales_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample sales file in a private directory (the server writes its cache beside it)."""
    return sample_csv_in(tmp_path_factory.mktemp("examples-data"))


def sample_csv_in(directory: Path) -> Path:
    """The committed sample sales file copied into ``directory`` (generated if it is not committed)."""
    target = directory / "sample_sales_data.csv"
    committed = REPO / "data" / "sample_sales_data.csv"
    if committed.is_file():
        shutil.copyfile(committed, target)
    else:
        generate_sample(target)
    return target


@contextmanager
def mcp_logging_kept() -> Iterator[None]:
    """``main()`` quiets the SDK's logger for the process; give other tests their logging back."""
    logger = logging.getLogger("mcp")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture
def restore_mcp_logging() -> Iterator[None]:
    with mcp_logging_kept():
        yield


def expected_top(csv: Path, operation: str, n: int) -> list[tuple[str, float]]:
    """The top products by units, computed independently with pandas (ties by product id)."""
    df = pd.read_csv(csv)
    sub = df[df["OPERATION_NAME"] == operation]
    totals = sub.groupby(["PRODUCT_ID", "PRODUCT_NAME"], as_index=False)["UNITS_SOLD"].sum()
    totals = totals.sort_values(["UNITS_SOLD", "PRODUCT_ID"], ascending=[False, True]).head(n)
    return [
        (str(name), float(units))
        for name, units in zip(totals["PRODUCT_NAME"], totals["UNITS_SOLD"], strict=True)
    ]


def months_after_data(csv: Path, count: int) -> list[str]:
    """``YYYY-MM`` of the ``count`` months after the last month in the file."""
    df = pd.read_csv(csv)
    last = int((df["CALENDAR_YEAR"] * 12 + df["CALENDAR_MONTH"] - 1).max())
    return [f"{m // 12}-{m % 12 + 1:02d}" for m in range(last + 1, last + 1 + count)]


def run_example(
    module: str, *args: str, drop_env: tuple[str, ...] = (), timeout: float = FAST
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m MODULE ARGS`` from the repository root, wide enough that tables never wrap."""
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


async def server_tools(csv: Path) -> list[Tool]:
    """The real tool list of our server (in-process: the schemas are the same as over stdio)."""
    with anyio.fail_after(FAST):
        async with Client(build_server(ServerConfig(data_path=csv, prefetch=False))) as client:
            return (await client.list_tools()).tools


def json_params(declaration: types.FunctionDeclaration) -> dict[str, Any]:
    params = declaration.parameters_json_schema
    assert isinstance(params, dict), "expected plain JSON Schema parameters"
    return params


def walk(node: Any) -> Iterator[Any]:
    """Every dict and list inside a JSON value, depth first."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from walk(child)


def keys_in(node: Any) -> set[str]:
    return {key for item in walk(node) if isinstance(item, dict) for key in item}


# --- the plain MCP client -------------------------------------------------------------------------


@pytest.mark.slow
def test_mcp_client_prints_the_real_top_products_and_a_forecast(sales_csv: Path) -> None:
    done = run_example(
        "examples.mcp_client_ssh",
        *("--local", "--data", str(sales_csv), "--operation", "Dallas", "--n", "5", "--horizon", "3"),
        timeout=SLOW,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for tool in TOOLS:
        assert any(line.split()[:1] == [tool] for line in lines), f"{tool} not listed:\n{done.stdout}"

    expected = expected_top(sales_csv, "Dallas", 5)
    rows = []
    for name, units in expected:
        matches = [i for i, line in enumerate(lines) if f" {name} " in line and f" {units:,.0f} " in line]
        assert matches, f"no row with {name} and {units:,.0f} units:\n{done.stdout}"
        rows.append(matches[0])
    assert rows == sorted(rows), "top products are not in the pandas order"
    assert "Top 5 of 25 products in Dallas by units (all dates)" in done.stdout

    forecast = done.stdout[done.stdout.index("Forecast of monthly units for Dallas") :]
    assert "3 months ahead" in forecast
    assert any(c in forecast for c in "▁▂▃▄▅▆▇█"), "no sparkline"
    for month in months_after_data(sales_csv, 3):
        assert any(line.strip().startswith(month) for line in forecast.splitlines()), month


def test_mcp_client_tool_error_is_one_line_and_exit_1(sales_csv: Path) -> None:
    done = run_example(
        "examples.mcp_client_ssh",
        "--local",
        "--data",
        str(sales_csv),
        "--operation",
        "Atlantis",
        "--horizon",
        "0",
    )
    assert done.returncode == 1
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and errors[0].startswith("error: top_n_products: ") and "Atlantis" in errors[0]
    assert "Traceback" not in done.stderr


def test_mcp_client_server_that_exits_is_one_line_and_exit_3() -> None:
    command = (
        f"{sys.executable} -c 'import sys; print(\"server: no data here\", file=sys.stderr); sys.exit(4)'"
    )
    done = run_example("examples.mcp_client_ssh", "--command", command)
    assert done.returncode == 3
    assert "server: no data here" in done.stderr  # the server's own words reach the user
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and "closed the connection" in errors[0]
    assert "Traceback" not in done.stderr


def test_mcp_client_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = run_example("examples.mcp_client_ssh", "--command", str(tmp_path / "no-such-server"))
    assert missing.returncode == 3 and "cannot start" in missing.stderr
    ssh_without_profile = run_example("examples.mcp_client_ssh", "--local", "--ssh")
    assert ssh_without_profile.returncode == 2
    assert error_lines(ssh_without_profile.stderr) == [
        "error: --ssh goes with --profile NAME (it picks how to reach that profile's host)"
    ]


def _proxy_ready() -> bool:
    try:
        from provision.connect import main
    except ImportError:
        return False
    return callable(getattr(main, "connect_main", None))


@pytest.mark.slow
@pytest.mark.skipif(
    not _proxy_ready(), reason="provision.connect.main.connect_main (mcpctl connect) is not there yet"
)
@pytest.mark.parametrize("style", ["proxy", "ssh"])
def test_mcp_client_through_a_profile_over_real_ssh(
    style: str, sshd: SshdServer, mcpctl_home: Path, sales_csv: Path
) -> None:
    """The whole path: example -> `mcpctl connect` (or OpenSSH) -> sshd -> the repository's server."""
    if style == "ssh" and shutil.which("ssh") is None:
        pytest.skip("no OpenSSH client (ssh) on PATH")
    profile = Profile(
        name="examples",
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        identity_file=sshd.client_key,
        remote_dir=str(REPO),  # its .venv runs mcp_sales, as a synced remote_dir would
        server_args=["--data", str(sales_csv)],
        connect_timeout=10.0,
    )
    save_profile(profile)
    pin_host_key(known_hosts_path(profile.name), sshd.host, sshd.port, sshd.host_key_line)
    args = ["--profile", profile.name, *(["--ssh"] if style == "ssh" else []), "--horizon", "0"]
    done = run_example("examples.mcp_client_ssh", *args, "--operation", "Dallas", "--n", "3", timeout=SLOW)
    assert done.returncode == 0, done.stderr
    expected = expected_top(sales_csv, "Dallas", 3)
    lines = done.stdout.splitlines()
    rows = [next(i for i, line in enumerate(lines) if f" {name} " in line) for name, _ in expected]
    assert rows == sorted(rows), done.stdout
    for row, (_, units) in zip(rows, expected, strict=True):
        assert f" {units:,.0f} " in lines[row]


def test_claude_config_example_is_what_mcpctl_writes() -> None:
    """The example file must stay exactly what `mcpctl config claude demo` would write (both styles)."""
    example = json.loads((REPO / "examples" / "claude_desktop_config.example.json").read_text())
    servers = example["mcpServers"]
    home = Path("/home/you")
    system = LocalSystem("linux", {}, home, home / ".local/share/uv/tools/mcpctl/bin/python")
    inputs = EntryInputs(
        name="demo",
        host="203.0.113.7",
        port=22,
        user="ubuntu",
        remote_dir="/home/ubuntu/mcpctl/demo",
        known_hosts=home / ".local/state/mcpctl/known_hosts/demo",
        identity_file=home / ".ssh/demo_ed25519",
        data=("sales.csv",),
    )
    assert servers["sales-demo"] == proxy_entry("demo", system, mcpctl_path=str(home / ".local/bin/mcpctl"))
    assert servers["sales-demo-ssh"] == ssh_entry(inputs, system, ssh_path="/usr/bin/ssh")
    assert all(is_mcpctl_entry(entry) for entry in servers.values())


# --- the schema converter -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_real_tool_converts_keeping_required_enums_defaults(sales_csv: Path) -> None:
    tools = {tool.name: tool for tool in await server_tools(sales_csv)}
    assert set(tools) == TOOLS
    for tool in tools.values():
        declaration = gem.function_declaration(tool)
        assert declaration.name == tool.name and declaration.description == tool.description
        original = tool.input_schema.get("properties", {})
        if not original:
            assert declaration.parameters_json_schema is None  # Gemini's form for "no parameters"
            continue
        params = json_params(declaration)
        assert params["type"] == "object" and set(params["properties"]) == set(original)
        assert params.get("required", []) == tool.input_schema.get("required", [])
        assert not keys_in(params) & {"title", "$ref", "$defs", "$schema"}
        for name, prop in original.items():  # every description and default made it
            assert params["properties"][name]["description"] == prop["description"]
            assert params["properties"][name].get("default", "absent") == prop.get("default", "absent")

    top = tools["top_n_products"]
    params = json_params(gem.function_declaration(top))
    assert params["required"] == ["n", "operation"]
    assert params["properties"]["n"]["type"] == "integer"
    assert params["properties"]["metric"]["enum"] == ["units", "revenue"]
    assert params["properties"]["metric"]["default"] == "units"
    assert params["properties"]["start_date"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    forecast = json_params(gem.function_declaration(tools["forecast_sales"]))
    assert forecast["required"] == ["operation"]
    assert forecast["properties"]["horizon_months"] == {
        "type": "integer",
        "description": "Months ahead, 1 to 36.",
        "default": 6,
    }


@pytest.mark.anyio
async def test_converted_schemas_accept_and_reject_what_the_originals_do(sales_csv: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the two schemas side by side")
    tools = {tool.name: tool for tool in await server_tools(sales_csv)}
    cases = {
        "top_n_products": [
            {"n": 5, "operation": "Dallas"},
            {
                "n": 5,
                "operation": "Dallas",
                "metric": "revenue",
                "start_date": None,
                "end_date": "2024-01-31",
            },
            {"operation": "Dallas"},
            {"n": 5, "operation": "Dallas", "metric": "profit"},
            {"n": "5", "operation": "Dallas"},
            {"n": 5, "operation": "Dallas", "start_date": 20240101},
        ],
        "forecast_sales": [
            {"operation": "Dallas"},
            {
                "operation": "Dallas",
                "horizon_months": 12,
                "interval_width": 0.9,
                "chart": True,
                "product": None,
            },
            {"horizon_months": 6},
            {"operation": "Dallas", "include_history": "yes"},
        ],
    }
    for name, instances in cases.items():
        original = tools[name].input_schema
        converted = gem.gemini_json_schema(original)
        for instance in instances:
            expected = jsonschema.Draft202012Validator(original).is_valid(instance)
            assert jsonschema.Draft202012Validator(converted).is_valid(instance) == expected, (name, instance)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: int = Field(description="Horizontal position.")
    y: int


class Tree(BaseModel):
    name: str
    children: list[Tree] = []


class Nested(BaseModel):
    """Arguments of a hand-made tool with everything pydantic can say."""

    color: Color
    where: Point | None = None
    path: list[Point] = Field(default_factory=list, description="Points to visit.", min_length=1)
    mode: Literal["a", "b"] = "a"
    weights: dict[str, int] = {}
    pair: tuple[int, str] | None = None
    count: int = Field(3, gt=0, le=10, description="How many.")
    tree: Tree | None = None


def test_nested_enum_optional_and_recursive_models_convert() -> None:
    original = Nested.model_json_schema()
    params = gem.gemini_json_schema(original)
    assert not keys_in(params) & {"title", "$ref", "$defs"}
    assert params["required"] == ["color"]
    props = params["properties"]
    assert props["color"] == {"type": "string", "enum": ["red", "blue"]}
    point = {
        "type": "object",
        "properties": {
            "x": {"type": "integer", "description": "Horizontal position."},
            "y": {"type": "integer"},
        },
        "required": ["x", "y"],
    }
    assert props["where"] == {"default": None, "anyOf": [point, {"type": "null"}]}
    assert props["path"] == {
        "type": "array",
        "description": "Points to visit.",
        "minItems": 1,
        "items": point,
    }
    assert props["mode"] == {"type": "string", "enum": ["a", "b"], "default": "a"}
    assert props["weights"]["additionalProperties"] == {"type": "integer"}
    pair = props["pair"]["anyOf"][0]
    assert pair["prefixItems"] == [{"type": "integer"}, {"type": "string"}] and pair["maxItems"] == 2
    assert props["count"]["maximum"] == 10 and "minimum" not in props["count"]
    assert props["count"]["description"] == "How many. (greater than 0)"  # no exclusiveMinimum in Gemini
    tree = props["tree"]["anyOf"][0]
    assert tree["required"] == ["name"]
    inner = tree["properties"]["children"]["items"]
    assert inner["type"] == "object" and "Tree" in inner["description"]  # recursion ends, described

    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the two schemas side by side")
    instances = [
        {"color": "red"},
        {"color": "green"},
        {"color": "blue", "where": {"x": 1, "y": 2}, "path": [{"x": 0, "y": 0}], "mode": "b"},
        {"color": "blue", "where": {"x": 1}},
        {"color": "blue", "path": []},
        {"color": "red", "weights": {"a": 1}, "pair": [1, "x"], "tree": {"name": "t", "children": []}},
        {"color": "red", "tree": {"children": []}},
        {"color": "red", "weights": {"a": "heavy"}},
        {"color": "red", "pair": ["x", 1]},
        {"color": "red", "count": 11},
    ]
    for instance in instances:
        expected = jsonschema.Draft202012Validator(original).is_valid(instance)
        assert jsonschema.Draft202012Validator(params).is_valid(instance) == expected, instance
    # Where the recursion was cut, the model is told the shape in words; the schema accepts any object.
    deep = {"color": "red", "tree": {"name": "t", "children": [{"no_name": True}]}}
    assert not jsonschema.Draft202012Validator(original).is_valid(deep)
    assert jsonschema.Draft202012Validator(params).is_valid(deep)


def test_type_lists_const_oneof_allof_and_old_style_refs() -> None:
    raw = {
        "type": "object",
        "properties": {
            "limit": {"type": ["integer", "null"], "minimum": 1, "description": "At most this many."},
            "kind": {"const": "fixed"},
            "shape": {"oneOf": [{"type": "string"}, {"anyOf": [{"type": "number"}, {"type": "null"}]}]},
            "box": {
                "allOf": [{"$ref": "#/definitions/Box"}],
                "description": "The box.",
                "properties": {"label": {"type": "string"}},
                "required": ["label"],
            },
        },
        "definitions": {
            "Box": {"type": "object", "properties": {"side": {"type": "number"}}, "required": ["side"]}
        },
        "required": ["kind", "box", "ghost"],
    }
    params = gem.gemini_json_schema(raw)
    props = params["properties"]
    assert props["limit"] == {
        "description": "At most this many.",
        "anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}],
    }
    assert props["kind"] == {"enum": ["fixed"]}
    assert props["shape"] == {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}
    assert props["box"] == {
        "type": "object",
        "properties": {"side": {"type": "number"}, "label": {"type": "string"}},
        "required": ["side", "label"],
        "description": "The box.",
    }
    assert params["required"] == ["kind", "box"]  # a required name with no property is dropped


def test_unconvertible_schemas_and_names_say_why() -> None:
    with pytest.raises(gem.SchemaError, match="only local references"):
        gem.gemini_json_schema({"type": "object", "properties": {"a": {"$ref": "https://example.com/a"}}})
    with pytest.raises(gem.SchemaError, match="points at nothing"):
        gem.gemini_json_schema({"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}})
    with pytest.raises(gem.SchemaError, match="must describe an object"):
        gem.gemini_json_schema({"type": "string"})
    bad = Tool(name="1st tool", input_schema={"type": "object", "properties": {}})
    with pytest.raises(gem.SchemaError, match="not a valid Gemini function name"):
        gem.function_declaration(bad)


@pytest.mark.anyio
async def test_openapi_subset_for_older_sdks(sales_csv: Path) -> None:
    tools = {tool.name: tool for tool in await server_tools(sales_csv)}
    declaration = gem.function_declaration(tools["top_n_products"], json_schema=False)
    assert declaration.parameters_json_schema is None
    schema = declaration.parameters
    assert schema is not None and schema.type == types.Type.OBJECT
    assert schema.required == ["n", "operation"]
    props = schema.properties or {}
    assert props["n"].type == types.Type.INTEGER
    assert props["metric"].enum == ["units", "revenue"] and props["metric"].default == "units"
    assert props["start_date"].type == types.Type.STRING and props["start_date"].nullable is True
    assert props["start_date"].any_of is None  # a single-branch union collapses

    nested = gem.openapi_schema(gem.gemini_json_schema(Nested.model_json_schema()))
    assert nested["properties"]["where"]["type"] == "OBJECT" and nested["properties"]["where"]["nullable"]
    assert nested["properties"]["path"]["items"]["required"] == ["x", "y"]
    assert nested["properties"]["weights"]["description"] == "Any property names"
    numbers = gem.openapi_schema({"type": "integer", "enum": [1, 2, 3], "description": "Level."})
    assert numbers == {"type": "INTEGER", "description": "Level. (one of 1, 2, 3)"}
    types.Schema.model_validate(nested)  # the SDK accepts what we built


def test_coerce_arguments_makes_whole_numbers_integers_only_where_the_schema_says() -> None:
    schema = gem.gemini_json_schema(Nested.model_json_schema())
    args = {
        "count": 4.0,
        "where": {"x": 1.0, "y": 2.0},
        "path": [{"x": 3.0, "y": 0.0}],
        "weights": {"a": 1.0},
    }
    coerced = gem.coerce_arguments(args, schema)
    assert coerced["count"] == 4 and isinstance(coerced["count"], int)
    assert isinstance(coerced["where"]["x"], int) and isinstance(coerced["path"][0]["x"], int)
    assert coerced["weights"] == {"a": 1.0}  # additionalProperties are left alone
    number = gem.coerce_arguments(
        {"interval_width": 1.0}, {"properties": {"interval_width": {"type": "number"}}}
    )
    assert isinstance(number["interval_width"], float)


def test_function_response_sends_structure_summary_or_error() -> None:
    ok = CallToolResult(
        content=[
            TextContent(type="text", text="3 rows"),
            ImageContent(type="image", data="", mime_type="image/png"),
        ],
        structured_content={"rows": 3},
    )
    assert gem.function_response(ok) == {
        "result": {"rows": 3},
        "summary": "3 rows",
        "note": "1 image(s) left out; describe the numbers instead",
    }
    failed = CallToolResult(content=[TextContent(type="text", text="no operation named 'X'")], is_error=True)
    assert gem.function_response(failed) == {"error": "no operation named 'X'"}


# --- the chat loop, with Gemini scripted ----------------------------------------------------------


class ScriptedModels:
    """Stands in for ``genai.Client().aio.models``: scripted answers, every request recorded."""

    def __init__(self, *responses: types.GenerateContentResponse) -> None:
        self.responses = list(responses)
        self.requests: list[tuple[str, list[types.Content], types.GenerateContentConfig]] = []

    async def generate_content(
        self, *, model: str, contents: list[types.Content], config: types.GenerateContentConfig
    ) -> types.GenerateContentResponse:
        self.requests.append((model, [c.model_copy(deep=True) for c in contents], config))
        if not self.responses:
            raise AssertionError("the model was asked more often than scripted")
        return self.responses.pop(0)


def calls(*calls: tuple[str, dict[str, Any]]) -> types.GenerateContentResponse:
    parts = [
        types.Part(function_call=types.FunctionCall(id=f"call-{i}", name=name, args=args))
        for i, (name, args) in enumerate(calls)
    ]
    content = types.Content(role="model", parts=parts)
    return types.GenerateContentResponse(candidates=[types.Candidate(content=content)])


def answer(text: str) -> types.GenerateContentResponse:
    content = types.Content(
        role="model", parts=[types.Part(text="thinking...", thought=True), types.Part(text=text)]
    )
    return types.GenerateContentResponse(
        candidates=[types.Candidate(content=content, finish_reason=types.FinishReason.STOP)]
    )


def sent_responses(contents: list[types.Content]) -> list[types.FunctionResponse]:
    last = contents[-1]
    assert last.role == "user"
    return [part.function_response for part in last.parts or () if part.function_response is not None]


def fake_genai(monkeypatch: pytest.MonkeyPatch, models: ScriptedModels) -> list[str]:
    """Replace ``genai.Client`` with one whose ``.aio.models`` is ``models``; return the keys it got."""
    keys: list[str] = []

    class FakeGenaiClient:
        """``genai.Client(api_key=...)`` whose ``.aio`` is an async context manager with ``.models``."""

        def __init__(self, *, api_key: str) -> None:
            keys.append(api_key)
            self.aio = self
            self.models = models

        async def __aenter__(self) -> FakeGenaiClient:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(genai, "Client", FakeGenaiClient)
    return keys


def test_chat_cli_runs_the_real_tool_and_prints_the_answer(
    sales_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    restore_mcp_logging: None,
) -> None:
    final = "In Dallas, Shampoo 500ml sells best."
    models = ScriptedModels(calls(("top_n_products", {"operation": "Dallas", "n": 3.0})), answer(final))
    keys = fake_genai(monkeypatch, models)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    code = gem.main(["--local", "--data", str(sales_csv), "--model", "gemini-test", "top 3 in Dallas?"])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert out.strip() == final
    assert '→ top_n_products(operation="Dallas", n=3)' in err
    assert keys == [KEY] and KEY not in out and KEY not in err

    assert len(models.requests) == 2
    model, first, config = models.requests[0]
    assert model == "gemini-test" and first[0].parts and first[0].parts[0].text == "top 3 in Dallas?"
    assert config.automatic_function_calling is not None and config.automatic_function_calling.disable
    assert config.tools and isinstance(config.tools[0], types.Tool)
    assert {d.name for d in config.tools[0].function_declarations or ()} == TOOLS
    _, second, _ = models.requests[1]
    assert second[1].parts and second[1].parts[0].function_call  # the model's turn went back verbatim
    (response,) = sent_responses(second)
    assert response.name == "top_n_products" and response.id == "call-0"
    result = (response.response or {})["result"]
    got = [(p["product_name"], p["units"]) for p in result["products"]]
    assert got == expected_top(sales_csv, "Dallas", 3)  # the real tool ran on the real data
    assert result["n"] == 3  # 3.0 from the model arrived as the integer the schema asks for


def test_interactive_chat_goes_on_after_a_failed_question(
    sales_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    restore_mcp_logging: None,
) -> None:
    models = ScriptedModels(answer("20 operations."), calls(("list_operations", {})), answer("Dallas."))
    fake_genai(monkeypatch, models)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    typed = iter(["how many operations?", "list them all, forever", "biggest one?", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    code = gem.main(["--local", "--data", str(sales_csv), "--max-rounds", "1"])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert out.splitlines() == ["20 operations.", "Dallas."]
    assert error_lines(err) == [
        "error: the model still wanted tools after 1 request without answering;"
        " ask a narrower question or raise --max-rounds"
    ]
    # The failed question left nothing behind: the third request holds questions one and three only.
    questions = [c.parts[0].text for c in models.requests[-1][1] if c.role == "user" and c.parts]
    assert questions == ["how many operations?", "biggest one?"]


@pytest.mark.anyio
async def test_chat_feeds_tool_errors_back_and_survives_a_runaway_question(sales_csv: Path) -> None:
    models = ScriptedModels(
        calls(("top_n_products", {"operation": "Atlantis", "n": 5}), ("drop_tables", {})),
        answer("There is no Atlantis in the data."),
        calls(("list_operations", {})),
        calls(("list_operations", {})),
    )
    seen: list[tuple[str, dict[str, Any]]] = []
    with anyio.fail_after(FAST):
        async with open_client(local_launch(sales_csv)) as client:
            tools = (await client.list_tools()).tools
            chat = gem.GeminiChat(
                models,
                client,
                tools,
                instructions=client.instructions,
                max_rounds=2,
                on_call=lambda name, args: seen.append((name, args)),
            )
            assert await chat.ask("top products in Atlantis?") == "There is no Atlantis in the data."
            settled = list(chat.history)
            with pytest.raises(gem.ChatError, match="after 2 requests"):
                await chat.ask("list everything, forever")
    errors = sent_responses(models.requests[1][1])
    assert [r.name for r in errors] == ["top_n_products", "drop_tables"]
    assert "Atlantis" in (errors[0].response or {})["error"]
    assert "no tool named 'drop_tables'" in (errors[1].response or {})["error"]
    assert (
        seen
        == [("top_n_products", {"operation": "Atlantis", "n": 5}), ("drop_tables", {})]
        + [("list_operations", {})] * 2
    )
    assert chat.history == settled  # the failed question left no half exchange behind
    assert "list_operations" in str(models.requests[0][2].system_instruction)  # the server's instructions


def test_list_tools_needs_no_api_key(sales_csv: Path) -> None:
    done = run_example(
        "examples.gemini_client_ssh",
        *("--local", "--data", str(sales_csv), "--list-tools"),
        drop_env=gem.API_KEY_ENVS,
    )
    assert done.returncode == 0, done.stderr
    declarations = json.loads(done.stdout)
    assert {d["name"] for d in declarations} == TOOLS
    top = next(d for d in declarations if d["name"] == "top_n_products")
    assert top["parameters_json_schema"]["required"] == ["n", "operation"]


def test_chat_without_api_key_fails_in_one_line_before_starting_anything() -> None:
    # The server command does not exist: reaching the key check first is what makes this exit 2.
    done = run_example(
        "examples.gemini_client_ssh",
        "--command",
        "no-such-server",
        "top products?",
        drop_env=gem.API_KEY_ENVS,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert error_lines(done.stderr) == [
        "error: no Gemini API key: set GEMINI_API_KEY or GOOGLE_API_KEY in the environment"
        " (--list-tools works without one)"
    ]
    assert gem.api_key({"GOOGLE_API_KEY": " k2 "}) == "k2" and gem.api_key({"GEMINI_API_KEY": ""}) is None
