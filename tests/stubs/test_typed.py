"""Objects as named TypedDicts in stubs: naming, sharing, recursion, limits; goldens of real tools."""

from __future__ import annotations

import ast
import os
import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stubs import ToolSpec, assign_identifiers, render_server_stub, render_tool_stub
from stubs.render import render_signature
from stubs.tool import param_map
from stubs.typed import MAX_CLASS, MAX_NEST, TypedRenderer, TypeTable, class_name
from tests.stubs.support import DATA, data_servers, data_specs, spec
from tests.stubs.test_schema import schemas

GOLDEN = DATA / "golden"
KNOWN = {"Any", "Literal", "NotRequired", "Required", "TypedDict", "str", "int", "float", "bool", "list", "dict"}


def random_tools(raw: list[tuple[str, Any, Any]]) -> list[ToolSpec]:
    """Tools from hypothesis' (name, input object, output object) triples, one per identifier."""
    ids = assign_identifiers([name for name, _, _ in raw])
    tools = [
        ToolSpec(name, ids[name], "", {"type": "object", "properties": {"p": inp, "q": inp}, "required": ["p"]},
                 out if isinstance(out, dict) else None)
        for name, inp, out in raw
    ]  # fmt: skip
    return list({t.identifier: t for t in tools}.values())


def body(stub: str) -> list[str]:
    """The stub without its header comment and import line."""
    return [line for line in stub.splitlines() if line and not line.startswith(("#", "from typing"))]


def obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required}


STR, INT = {"type": "string"}, {"type": "integer"}


def tool(name: str, inputs: dict[str, Any] | None = None, output: dict[str, Any] | None = None) -> ToolSpec:
    return spec(name, inputs or {"type": "object", "properties": {}}, output_schema=output)


@pytest.mark.parametrize(
    ("hint", "expected"),
    [("start", "Start"), ("rich_text", "RichText"), ("API-get-user", "APIGetUser"), ("$type", "Type"),
     ("2fa", "T2fa"), ("", "Obj"), ("é", "Obj"), ("itemsSchema", "ItemsSchema")],
)  # fmt: skip
def test_class_names(hint: str, expected: str) -> None:
    assert class_name(hint) == expected


def test_nested_input_and_output_objects_become_classes() -> None:
    line = obj(sku=STR, quantity=INT)
    order = obj(["id", "lines"], id=STR, lines={"type": "array", "items": line}, note=STR)
    stub = render_server_stub("shop", [
        tool("get_order", obj(id=STR), {"$defs": {"Order": order}, "$ref": "#/$defs/Order"}),
        tool("add_order", obj(order=order)),
    ])  # fmt: skip
    assert body(stub) == [
        "class Line(TypedDict): sku: str; quantity: int",
        "class Order(TypedDict): id: str; lines: list[Line]; note: NotRequired[str]",
        "def add_order(order: Order): ...",
        "def get_order(id: str) -> Order: ...",
    ]
    assert "from typing import NotRequired, TypedDict" in stub


def test_mostly_optional_fields_use_total_false() -> None:
    stub = render_server_stub("s", [tool("f", obj(q=obj(["a"], a=STR, b=INT, c=INT)))])
    assert body(stub)[0] == "class Q(TypedDict, total=False): a: Required[str]; b: int; c: int"


def test_keys_that_are_not_identifiers_use_the_functional_form() -> None:
    stub = render_server_stub("s", [tool("f", obj(where=obj(**{"from": STR, "$type": INT})))])
    assert body(stub)[0] == 'Where = TypedDict("Where", {"from": str, "$type": int})'
    ast.parse(stub)


def test_identical_shapes_share_a_class_and_different_ones_are_numbered() -> None:
    point = obj(x=INT, y=INT)
    stub = render_server_stub("s", [
        tool("a", obj(start=point, end=point)),
        tool("b", obj(start=obj(line=INT))),
    ])  # fmt: skip
    assert body(stub) == [
        "class Start(TypedDict): x: int; y: int",
        "class Start2(TypedDict): line: int",
        "def a(start: Start, end: Start): ...",
        "def b(start: Start2): ...",
    ]


def test_class_names_avoid_tools_and_typing_names() -> None:
    stub = render_server_stub("s", [tool("Any", obj(any=obj(x=INT))), tool("Literal", obj(tool=obj(y=INT)))])
    assert body(stub)[:2] == ["class Any2(TypedDict): x: int", "class Tool(TypedDict): y: int"]


def test_recursive_ref_names_its_own_class() -> None:
    schema = {
        "$defs": {"Node": obj(["name"], name=STR, children={"type": "array", "items": {"$ref": "#/$defs/Node"}})},
        "type": "object", "properties": {"root": {"$ref": "#/$defs/Node"}}, "required": ["root"],
    }  # fmt: skip
    stub = render_server_stub("s", [tool("tree", schema, schema["$defs"]["Node"] | {"$defs": schema["$defs"]})])
    assert "class Node(TypedDict): name: str; children: NotRequired[list[Node]]" in stub
    assert "def tree(root: Node) -> TreeResult: ..." in stub
    ping = {"$defs": {"A": obj(b={"$ref": "#/$defs/B"}), "B": obj(a={"$ref": "#/$defs/A"})}, "$ref": "#/$defs/A"}
    ring = render_server_stub("s", [tool("ring", None, ping)])
    assert body(ring)[-1] == "def ring() -> A: ..."
    ast.parse(ring)


def test_objects_deeper_than_the_limit_stay_dict() -> None:
    deep: dict[str, Any] = obj(leaf=STR)
    for level in range(MAX_NEST + 1):
        deep = obj(**{f"level{level}": deep})
    stub = render_server_stub("s", [tool("f", obj(top=deep))])
    assert body(stub)[-1] == "def f(top: Top): ..."
    assert len(body(stub)) == MAX_NEST + 1 and "dict" in body(stub)[0]


def test_long_classes_stay_dict_and_leave_no_trace() -> None:
    wide = obj(**{f"field_number_{i}": obj(inner=STR) for i in range(MAX_CLASS // 20)})
    stub = render_server_stub("s", [tool("f", obj(wide=wide, small=obj(inner=STR)))])
    assert body(stub) == ["class Small(TypedDict): inner: str", "def f(wide: dict, small: Small): ..."]


def test_optional_input_objects_stay_dict_but_results_are_typed() -> None:
    point = obj(x=INT)
    stub = render_server_stub("s", [tool("f", obj(["a", "c"], a=point, b=point, c=obj(["d"], d=point, e=point)),
                                         obj([], r=point))])  # fmt: skip
    assert body(stub) == [
        "class A(TypedDict): x: int",
        "class C(TypedDict): d: A; e: NotRequired[dict]",
        "class FResult(TypedDict, total=False): r: A",
        "def f(a: A, c: C, b: dict = None) -> FResult: ...",
    ]


def test_all_of_parts_make_one_class() -> None:
    merged = {"allOf": [obj(a=STR), obj(["b"], b=INT, c=INT)]}
    assert body(render_server_stub("s", [tool("f", obj(m=merged))]))[0] == (
        "class M(TypedDict): a: str; b: int; c: NotRequired[int]"
    )


def test_unions_of_tagged_objects() -> None:
    cat, dog = obj(kind={"const": "cat"}, lives=INT), obj(kind={"const": "dog"}, good=True)
    stub = render_server_stub("s", [tool("f", obj(pet={"oneOf": [cat, dog, {"type": "null"}]}))])
    assert body(stub) == [
        'class Pet(TypedDict): kind: Literal["cat"]; lives: int',
        'class Pet2(TypedDict): kind: Literal["dog"]; good: Any',
        "def f(pet: Pet | Pet2 | None): ...",
    ]


def test_a_result_several_tools_return_is_named_for_all_of_them() -> None:
    page = obj(["items"], items={"type": "array", "items": STR}, next=STR)
    tools = [tool("srv_monitor_get", None, page), tool("srv_monitor_list", None, page), tool("other", None, obj(x=INT))]
    stub = render_server_stub("srv", tools)
    assert body(stub) == [
        "class OtherResult(TypedDict): x: int",
        "class MonitorResult(TypedDict): items: list[str]; next: NotRequired[str]",
        "def other() -> OtherResult: ...",
        "def srv_monitor_get() -> MonitorResult: ...",
        "def srv_monitor_list() -> MonitorResult: ...",
    ]
    unrelated = render_server_stub("srv", [tool("get_a", None, page), tool("list_b", None, page)])
    assert body(unrelated)[0].startswith("class SrvResult(TypedDict): ")  # named for the server, not `Result`


def test_a_generic_name_gives_way_to_the_title_or_the_tool() -> None:
    listed = {"$defs": {"Result": obj(id=STR)}, "type": "array", "items": {"$ref": "#/$defs/Result"}}
    titled = {"$defs": {"Result": {**obj(sku=STR), "title": "Item"}}, "$ref": "#/$defs/Result"}
    stub = render_server_stub("gh", [tool("list_issues", None, listed), tool("gh_get_item", None, titled),
                                     tool("get_data", None, obj(data=obj(x=INT)))])
    assert body(stub) == [
        "class Data(TypedDict): x: int",  # a field keeps its own name
        "class GetDataResult(TypedDict): data: Data",
        "class Item(TypedDict): sku: str",
        "class ListIssuesResult(TypedDict): id: str",
        "def get_data() -> GetDataResult: ...",
        "def gh_get_item() -> Item: ...",
        "def list_issues() -> list[ListIssuesResult]: ...",
    ]


def test_a_single_signature_without_a_table_keeps_dict() -> None:
    assert render_signature(tool("f", obj(p=obj(x=INT)), obj(r=INT))) == "def f(p: dict) -> dict: ..."


def test_renderer_hint_is_restored_after_each_expression() -> None:
    table = TypeTable()
    renderer = TypedRenderer({}, table)
    assert renderer.expr({"type": "array", "items": obj(x=INT)}, hint="points") == "list[Point]"
    assert renderer.hint == "" and table.lines(["x: Point"]) == ["class Point(TypedDict): x: int"]


@pytest.mark.parametrize("server", data_servers())
def test_golden_stubs_of_tricky_real_tools(server: str) -> None:
    """`UPDATE_GOLDEN=1 pytest tests/stubs/test_typed.py` rewrites them after a deliberate change.

    They are `.stub.txt` files so that linters leave the generated stub text alone.
    """
    tools = list(data_specs(server).values())
    stub = render_server_stub(server, tools)
    path = GOLDEN / f"{server}.stub.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(stub, encoding="utf-8")
    assert stub == path.read_text(encoding="utf-8")
    shuffled = list(tools)
    random.Random(3).shuffle(shuffled)
    assert render_server_stub(server, shuffled) == stub


def _check_stub(stub: str, tools: list[ToolSpec]) -> None:
    """Parses; one def per tool under its identifier, with the keywords param_map knows; every name defined."""
    tree = ast.parse(stub)
    classes = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes.add(node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            classes.add(node.targets[0].id)
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert sorted(funcs) == sorted(t.identifier for t in tools)
    for t in tools:
        assert [a.arg for a in funcs[t.identifier].args.args] == list(param_map(t))
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    assert used <= KNOWN | classes, used - KNOWN - classes
    assert len(classes) == sum(isinstance(n, ast.ClassDef | ast.Assign) for n in tree.body)


objects = st.recursive(
    schemas,
    lambda inner: st.one_of(
        st.builds(lambda props, n: obj(list(props)[:n], **props),
                  st.dictionaries(st.sampled_from(["a", "from", "x-y", "b", "type", "Any"]), inner, max_size=4),
                  st.integers(0, 4)),
        st.builds(lambda s: {"type": "array", "items": s}, inner),
        st.builds(lambda xs: {"anyOf": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda s: {"$defs": {"X": s}, "$ref": "#/$defs/X"}, inner),
    ),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=6), objects, objects), min_size=1, max_size=4))
def test_random_nested_schemas_give_parseable_complete_stubs(raw: list[tuple[str, Any, Any]]) -> None:
    tools = random_tools(raw)
    stub = render_server_stub("s", tools)
    _check_stub(stub, tools)
    assert render_server_stub("s", list(reversed(tools))) == stub
    for t in tools:
        _check_stub(render_tool_stub("s", t), [t])


def test_golden_directory_has_no_strays() -> None:
    assert sorted(p.name.removesuffix(".stub.txt") for p in GOLDEN.glob("*.stub.txt")) == data_servers()


def test_classes_of_a_union_that_says_nothing_are_taken_back() -> None:
    many = {"anyOf": [obj(**{f"k{i}": INT}) for i in range(8)]}
    stub = render_server_stub("s", [tool("f", obj(p=many, q=obj(k0=INT)))])
    assert body(stub) == ["class Q(TypedDict): k0: int", "def f(p: Any, q: Q): ..."]


def test_a_self_reference_inside_a_dropped_part_keeps_its_name_reserved() -> None:
    inner = {"anyOf": [obj(x=INT), obj(y=INT), obj(z=INT), obj(w=INT), {"$ref": "#/$defs/A"}]}
    schema = {"$defs": {"A": obj(a=inner, b={"$ref": "#/$defs/A"})}, "$ref": "#/$defs/A"}
    stub = render_server_stub("s", [tool("f", None, schema), tool("g", obj(a=obj(n=INT)))])
    _check_stub(stub, [tool("f", None, schema), tool("g", obj(a=obj(n=INT)))])
    own = re.search(r"^class (A\d*)\(TypedDict\): a: Any; b: \1$", stub, re.MULTILINE)
    assert own is not None and f"def f() -> {own[1]}: ..." in stub
    assert body(stub)[-1] != f"def g(a: {own[1]}): ..."


PRODUCT = {**obj(sku=STR, stock=INT), "title": "Product"}


def test_a_result_is_named_after_its_schemas_title_however_many_tools_return_it() -> None:
    """The demo's inventory: three tools return a `Product` (one a list of them, through `$defs`), none an
    `InventoryResult`."""
    listed = {"$defs": {"Product": PRODUCT}, "type": "array", "items": {"$ref": "#/$defs/Product"}}
    tools = [tool("get_product", obj(sku=STR), PRODUCT), tool("adjust_stock", obj(sku=STR, delta=INT), PRODUCT),
             tool("list_products", None, listed)]  # fmt: skip
    stub = render_server_stub("inventory", tools)
    assert body(stub) == [
        "class Product(TypedDict): sku: str; stock: int",
        "def adjust_stock(sku: str, delta: int) -> Product: ...",
        "def get_product(sku: str) -> Product: ...",
        "def list_products() -> list[Product]: ...",
    ]
    assert body(render_tool_stub("inventory", tools[0]))[-1] == "def get_product(sku: str) -> Product: ..."
    untitled = {k: v for k, v in PRODUCT.items() if k != "title"}  # without one, still named for the tools
    assert body(render_server_stub("inventory", [tool("get_product", None, untitled),
                                                 tool("adjust_stock", None, untitled)]))[0].startswith(
        "class InventoryResult(TypedDict): ")


def test_two_shapes_with_one_title_are_numbered_in_tool_order() -> None:
    other = {**obj(sku=STR, price=INT), "title": "Product"}
    tools = [tool("b_get", None, PRODUCT), tool("a_get", None, other), tool("c_get", None, PRODUCT)]
    stub = render_server_stub("s", tools)
    assert body(stub) == [
        "class Product(TypedDict): sku: str; price: int",  # a_get comes first in the stub
        "class Product2(TypedDict): sku: str; stock: int",
        "def a_get() -> Product: ...",
        "def b_get() -> Product2: ...",
        "def c_get() -> Product2: ...",
    ]
    for _ in range(3):
        random.Random(5).shuffle(tools)
        assert render_server_stub("s", tools) == stub


def test_one_shape_under_two_titles_gets_a_class_for_each() -> None:
    item = {**PRODUCT, "title": "Item"}
    stub = render_server_stub("s", [tool("get_item", None, item), tool("get_product", None, PRODUCT),
                                    tool("add", obj(product=obj(sku=STR, stock=INT)))])  # fmt: skip
    assert body(stub) == [
        "class Product(TypedDict): sku: str; stock: int",  # `add`'s parameter comes first, under the same name
        "class Item(TypedDict): sku: str; stock: int",
        "def add(product: Product): ...",
        "def get_item() -> Item: ...",
        "def get_product() -> Product: ...",
    ]


def test_the_title_names_the_result_through_a_ref_or_a_null_option_but_not_a_generic_one() -> None:
    defs = {"P": obj(sku=STR)}
    stub = render_server_stub("s", [
        tool("by_ref", None, {"$defs": defs, "$ref": "#/$defs/P", "title": "Part"}),
        tool("maybe", None, {"anyOf": [obj(n=INT), {"type": "null"}], "title": "Count"}),
        tool("generic", None, {**obj(x=INT), "title": "Output"}),
        tool("inner", None, {**obj(one=obj(y=INT)), "title": "Outer"}),
    ])  # fmt: skip
    assert body(stub) == [
        "class Part(TypedDict): sku: str",
        "class GenericResult(TypedDict): x: int",
        "class One(TypedDict): y: int",  # objects inside the result keep their own names
        "class Outer(TypedDict): one: One",
        "class Count(TypedDict): n: int",
        "def by_ref() -> Part: ...",
        "def generic() -> GenericResult: ...",
        "def inner() -> Outer: ...",
        "def maybe() -> Count | None: ...",
    ]
