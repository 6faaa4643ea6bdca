"""The type stubs (ucp/__init__.pyi) against the package at run time: every public name of the
package is stubbed, every stubbed name and class member exists, and help() shows docstrings."""
import ast
import inspect
import pathlib

import ucp

STUB = pathlib.Path(__file__).resolve().parents[1] / "ucp" / "__init__.pyi"


def stub_names():
    tree = ast.parse(STUB.read_text())
    names, members = set(), {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
        if isinstance(node, ast.ClassDef):
            members[node.name] = {n.name if isinstance(n, ast.FunctionDef) else n.target.id
                                  for n in node.body
                                  if isinstance(n, (ast.FunctionDef, ast.AnnAssign))}
    return names, members


def test_every_public_name_is_stubbed_and_exists():
    names, _ = stub_names()
    assert set(ucp.__all__) <= names, set(ucp.__all__) - names
    for name in ucp.__all__:
        assert hasattr(ucp, name), name


def test_every_stubbed_member_exists():
    _, members = stub_names()
    for cls, attrs in members.items():
        runtime = getattr(ucp, cls)
        for attr in attrs - {"__getattr__"}:
            if cls == "Result" and attr == "verb":
                continue  # an instance attribute
            assert hasattr(runtime, attr), f"{cls}.{attr}"


def test_verbs_have_docstrings():
    for verb in (ucp.open, ucp.convert, ucp.reshard, ucp.export, ucp.verify, ucp.diff,
                 ucp.load_state_dict):
        assert inspect.getdoc(verb), verb.__name__
