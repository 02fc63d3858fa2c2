"""Declaring sagas: validation at class definition, names, specs and registration (pure logic)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import sagas
from sagas import registry


def act(ctx: sagas.StepContext) -> None:
    return None


def undo(ctx: sagas.StepContext) -> None:
    return None


def other(ctx: sagas.StepContext) -> None:
    return None


@pytest.fixture
def declared() -> Iterator[list[type[sagas.Saga]]]:
    """Sagas a test declares are forgotten afterwards."""
    classes: list[type[sagas.Saga]] = []
    yield classes
    for cls in classes:
        registry.unregister(cls)


def declare(declared: list, class_name: str, steps: list, **attrs: object) -> type[sagas.Saga]:
    cls = type(class_name, (sagas.Saga,), {"__module__": __name__, "steps": steps, **attrs})
    declared.append(cls)
    return cls


def test_two_steps_with_one_name_are_refused_at_class_definition(declared: list) -> None:
    with pytest.raises(sagas.InvalidDefinition, match="two steps are named 'act'"):
        declare(declared, "Twice", [sagas.Step(act, undo), sagas.Step(act)], name="tests.twice")
    with pytest.raises(sagas.UnknownSaga):
        sagas.get_saga("tests.twice")


def test_step_name_defaults_to_the_function_name_and_can_be_given() -> None:
    assert sagas.Step(act).name == "act"
    assert sagas.Step(act, name="book").name == "book"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "has space"}, "name 'has space' is not a valid identifier"),
        ({"name": "1st"}, "is not a valid identifier"),
        ({"action": "not callable", "name": "x"}, "action must be callable"),
        ({"compensation": 3}, "compensation must be callable"),
        ({"timeout": 0}, "timeout must be a positive number of seconds (at most a century), got 0"),
        ({"timeout": -5}, "timeout must be a positive number of seconds (at most a century), got -5"),
        ({"timeout": 1e300}, "timeout must be a positive number of seconds (at most a century), got 1e+300"),
        ({"timeout": float("nan")}, "timeout must be a positive number of seconds (at most a century), got nan"),
        ({"retry": {"max_attempts": 3}}, "retry must be a sagas.RetryPolicy"),
        ({"retry": sagas.RetryPolicy(max_attempts=0)}, "retry: max_attempts must be an int >= 1, got 0"),
        (
            {"compensation_retry": sagas.RetryPolicy(overrides={"gremlins": {"max_attempts": 2}})},
            "compensation_retry: overrides: unknown failure class 'gremlins'",
        ),
        ({"priority": "high"}, "priority must be an int, got 'high'"),
        ({"priority": 1.5}, "priority must be an int"),
        ({"service": "pay ments"}, "service must be a name"),
    ],
)
def test_bad_step_configuration_is_refused_naming_saga_and_step(declared: list, kwargs: dict, message: str) -> None:
    arguments = {"action": act, **kwargs}
    step_name = arguments.get("name", "act")
    with pytest.raises(sagas.InvalidDefinition) as refused:
        declare(declared, "Misconfigured", [sagas.Step(**arguments)], name="tests.misconfigured")
    text = str(refused.value)
    assert f"Saga Misconfigured ('tests.misconfigured'), step {step_name!r}: " in text
    assert message in text
    with pytest.raises(sagas.UnknownSaga):
        sagas.get_saga("tests.misconfigured")


def test_every_problem_is_listed_at_once(declared: list) -> None:
    steps = [sagas.Step(act, timeout=-1), sagas.Step(other, priority="x")]
    with pytest.raises(sagas.InvalidDefinition) as refused:
        declare(declared, "Twice", steps, name="tests.two_problems")
    assert "step 'act': timeout" in str(refused.value)
    assert "step 'other': priority" in str(refused.value)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([sagas.Step(act, depends_on=["other"]), sagas.Step(other)], "declared after it"),
        ([sagas.Step(act, depends_on=["missing"])], "not a step of this saga"),
        ([sagas.Step(act, depends_on=["act"])], "step 'act': depends on itself"),
        (
            [
                sagas.Step(act, depends_on=["undo"]),
                sagas.Step(other, depends_on=["act"]),
                sagas.Step(undo, depends_on=["other"]),
            ],
            r"Saga Bad \('tests.bad'\), step 'act': its dependencies form a cycle: act -> undo -> other -> act\.$",
        ),
        (
            [sagas.Step(act), sagas.Step(other, depends_on=["act", "act"])],
            "step 'other': depends_on names a step twice",
        ),
        ([], "declares no steps"),
        (["act"], "must be sagas.Step objects"),
    ],
)
def test_bad_step_lists_are_refused(declared: list, steps: list, message: str) -> None:
    with pytest.raises(sagas.InvalidDefinition, match=message):
        declare(declared, "Bad", steps, name="tests.bad")


@pytest.mark.parametrize(("attrs", "message"), [({"version": 0}, "version"), ({"timeout": -5}, "timeout")])
def test_bad_saga_attributes_are_refused(declared: list, attrs: dict, message: str) -> None:
    with pytest.raises(sagas.InvalidDefinition, match=message):
        declare(declared, "Bad", [sagas.Step(act)], name="tests.bad", **attrs)


def test_dependencies_on_earlier_steps_are_accepted(declared: list) -> None:
    cls = declare(declared, "Ordered", [sagas.Step(act), sagas.Step(other, depends_on="act")], name="tests.ordered")
    assert cls.step("other").depends_on == ("act",)


def test_saga_name_defaults_to_app_label_and_class_name(declared: list) -> None:
    cls = type("DefaultName", (sagas.Saga,), {"__module__": "tests.testapp.sagas", "steps": [sagas.Step(act)]})
    declared.append(cls)
    assert cls.name == "testapp.DefaultName"
    assert sagas.get_saga("testapp.DefaultName") is cls


def test_abstract_base_classes_are_not_registered(declared: list) -> None:
    base = type("Base", (sagas.Saga,), {"__module__": __name__, "abstract": True, "name": "tests.base"})
    child = declare(declared, "Child", [sagas.Step(act)], name="tests.child")
    assert issubclass(child, sagas.Saga)
    assert base.abstract
    with pytest.raises(sagas.UnknownSaga):
        sagas.get_saga("tests.base")


def test_another_class_with_the_same_name_and_version_is_refused(declared: list) -> None:
    declare(declared, "First", [sagas.Step(act)], name="tests.same")
    with pytest.raises(sagas.InvalidDefinition, match="declared twice"):
        type("Second", (sagas.Saga,), {"__module__": __name__, "name": "tests.same", "steps": [sagas.Step(act)]})


def test_get_saga_returns_the_highest_version_unless_asked(declared: list) -> None:
    v1 = declare(declared, "V1", [sagas.Step(act)], name="tests.versions", version=1)
    v2 = declare(declared, "V2", [sagas.Step(act), sagas.Step(other)], name="tests.versions", version=2)
    assert sagas.get_saga("tests.versions") is v2
    assert sagas.get_saga("tests.versions", version=1) is v1
    with pytest.raises(sagas.UnknownSaga, match=r"no version 3.*registered: 1, 2"):
        sagas.get_saga("tests.versions", version=3)


def test_spec_hash_changes_with_the_steps(declared: list) -> None:
    one = declare(declared, "One", [sagas.Step(act, undo)], name="tests.spec_one")
    same = declare(declared, "Same", [sagas.Step(act, undo)], name="tests.spec_one", version=2)
    changed = declare(declared, "Changed", [sagas.Step(act, undo, timeout=5)], name="tests.spec_one", version=3)
    assert one.spec()["steps"][0] == {
        "index": 0,
        "name": "act",
        "action": f"{__name__}.act",
        "compensation": f"{__name__}.undo",
        "service": None,
        "timeout": None,
        "retry": None,
        "compensation_retry": None,
        "depends_on": [],
        "priority": 0,
    }
    assert one.spec_hash() != changed.spec_hash()
    assert {k: v for k, v in one.spec().items() if k != "version"} == {
        k: v for k, v in same.spec().items() if k != "version"
    }


def test_a_plain_sequence_depends_on_the_step_before(declared: list) -> None:
    cls = declare(declared, "Seq", [sagas.Step(act), sagas.Step(other), sagas.Step(undo)], name="tests.seq")
    assert cls.dependencies() == {"act": frozenset(), "other": {"act"}, "undo": {"other"}}
    assert cls.ancestors()["undo"] == {"act", "other"}


def test_declared_dependencies_make_an_explicit_graph(declared: list) -> None:
    steps = [
        sagas.Step(act),
        sagas.Step(other, depends_on=["act"]),
        sagas.Step(undo, depends_on=["act"]),
        sagas.Step(lambda ctx: None, name="last", depends_on=["other", "undo"]),
    ]
    cls = declare(declared, "Graph", steps, name="tests.graph")
    ancestors = cls.ancestors()
    assert ancestors["last"] == {"act", "other", "undo"}
    assert "other" not in ancestors["undo"]
    assert "undo" not in ancestors["other"]


def test_a_cycle_is_reported_once_naming_every_step_in_it(declared: list) -> None:
    steps = [sagas.Step(act, depends_on=["other"]), sagas.Step(other, depends_on=["act"]), sagas.Step(undo)]
    with pytest.raises(sagas.InvalidDefinition) as refused:
        declare(declared, "Loop", steps, name="tests.loop")
    assert (
        str(refused.value)
        == "Saga Loop ('tests.loop'), step 'act': its dependencies form a cycle: act -> other -> act."
    )


def test_only_a_declared_graph_runs_steps_in_parallel(declared: list) -> None:
    sequence = declare(declared, "Seq", [sagas.Step(act), sagas.Step(other)], name="tests.seq")
    graph = declare(declared, "Graph", [sagas.Step(act), sagas.Step(other, depends_on=["act"])], name="tests.graph")
    assert not sequence.is_graph()
    assert graph.is_graph()
