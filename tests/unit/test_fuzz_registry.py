"""Fuzzed registry writes: `record_deployment`, `record_rollback` and `record_evidence` either
write exactly what was asked or refuse with RegistryError naming the field, and a refusal
writes nothing. Most examples run against a registry folder (the store's commit step applied to
a copy, kept only when it succeeds); a few regressions run against a real GitOps repository."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from release.gitops import umbrella
from release.domain.config import DEFAULT_CONFIG_PATH, GITOPS_TEMPLATE_DIR, parse_config
from release.gitops.store import CommitResult
from release.domain.registry import DeployRequest, RegistryError, RegistryState, validate_actor, validate_request
from release.gitops.registry import Registry
from tests.helpers import digest, head
from tests.unit.fuzzing import field_of, fuzz, hostile, junk, mostly_valid, nasty_text

CONFIG = parse_config(DEFAULT_CONFIG_PATH.read_text())
SERVICES = list(CONFIG.services)
VERSIONS = ["1.0", "1.1", "2.0"]


def image(service: str, build: str = "a") -> str:
    return f"{CONFIG.services[service].image}@{digest(build)}"


def seeded_state() -> RegistryState:
    state = RegistryState()
    for env, service, version, build in [("dev", "service-a", "1.0", "a"), ("dev", "service-a", "1.1", "b"),
                                         ("dev", "service-a", "2.0", "c"), ("dev", "service-b", "1.0", "a"),
                                         ("staging", "service-a", "1.0", "a"), ("staging", "service-a", "1.1", "b"),
                                         ("prod", "service-a", "1.0", "a")]:
        state.deploy(env, DeployRequest(service, version, image(service, build), {"smoke": {"passed": True}}),
                     by="alice", run_id="r0", at="2026-11-01T00:00:00Z")
    return state


class FolderStore:
    """A GitOps store over one folder: a change is applied to a copy and kept only if it returns,
    as GitOpsStore applies it to a fresh clone and pushes only then."""

    def __init__(self, tree: Path):
        self.tree, self.commits = tree, []

    @contextmanager
    def checkout(self):
        yield self.tree

    def change(self, apply, *, author=None) -> CommitResult:
        work = Path(tempfile.mkdtemp(prefix="registry-fuzz-")) / "tree"
        try:
            shutil.copytree(self.tree, work)
            message = apply(work)
            if message is None:
                return CommitResult(None, 1, None)
            shutil.rmtree(self.tree)
            shutil.move(work, self.tree)
            self.commits.append(message)
            return CommitResult("0" * 40, 1, message)
        finally:
            shutil.rmtree(work.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def seeded_tree(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("registry") / "tree"
    seed(tree)
    shutil.copytree(tree, tree.with_name("pristine"), symlinks=True)
    return tree


@contextmanager
def registry_over(seeded: Path):
    """A registry over the seeded folder, put back as it was after a write that committed."""
    registry = Registry(FolderStore(seeded), CONFIG)
    try:
        yield registry
    finally:
        if registry.store.commits:
            shutil.rmtree(seeded)
            shutil.copytree(seeded.with_name("pristine"), seeded, symlinks=True)


def seed(tree: Path) -> None:
    shutil.copytree(GITOPS_TEMPLATE_DIR, tree, symlinks=True)
    state = seeded_state()
    state.write(tree, CONFIG.env_order)
    umbrella.write_all(tree, CONFIG, state)


def files(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}


envs = hostile(st.sampled_from(CONFIG.env_order))
users = hostile(st.sampled_from(["alice", "bob"]))
run_ids = hostile(st.sampled_from(["manual__2026-11-01T00:00:00+00:00", "r1"]))
reasons = st.one_of(st.text(max_size=20), nasty_text, junk)
requests = st.builds(
    DeployRequest, service=hostile(st.sampled_from(SERVICES)), version=hostile(st.sampled_from(VERSIONS)),
    image=hostile(st.builds(image, st.sampled_from(SERVICES), st.sampled_from("abd"))),
    evidence=st.one_of(st.just({}), st.dictionaries(st.text(max_size=8), junk, max_size=3), junk),
)
WRITE_FIELDS = {"env", "service", "services", "version", "image", "evidence", "deployed_by", "run_id", "reason",
                "approved_by", "to_version", "outcome", "updates"}


@fuzz(200)
@given(env=envs, request=requests, by=users, run_id=run_ids, reason=reasons)
@example(env=["dev"], request=DeployRequest("service-a", "1.0", image("service-a")), by="alice", run_id="r", reason="")
@example(env="dev", request=DeployRequest("service-a", 1.0, image("service-a")), by="alice", run_id="r", reason="")
@example(env="dev", request=DeployRequest("service-a", "1.0", None), by="alice", run_id="r", reason="")
@example(env="dev", request=DeployRequest("service-a", "1.0", image("service-a")), by=7, run_id=None, reason=None)
def test_validation_of_a_write_names_the_field(env, request, by, run_id, reason):
    try:
        validate_actor(by, run_id, reason)
        validate_request(CONFIG, env, request)
    except RegistryError as exc:
        assert field_of(str(exc)) in WRITE_FIELDS, exc
        return
    assert env in CONFIG.environments and request.service in CONFIG.services_in(env)
    assert request.image.startswith(CONFIG.services[request.service].image + "@sha256:")


def valid_request(env_and_service) -> st.SearchStrategy:
    env, service = env_and_service
    return st.builds(DeployRequest, st.just(service), st.sampled_from(VERSIONS),
                     st.builds(image, st.just(service), st.sampled_from("abcd")),
                     st.one_of(st.just({}), st.dictionaries(st.text(max_size=8), junk, max_size=2)))


@fuzz(30)
@given(data=st.data())
def test_record_deployment_writes_what_was_asked_or_nothing(seeded_tree, data):
    env = data.draw(st.sampled_from(CONFIG.env_order), label="env")
    services = st.lists(st.sampled_from(SERVICES), min_size=1, max_size=3, unique=True)
    valid = {"env": st.just(env), "reqs": services.flatmap(lambda names: st.tuples(*[valid_request((env, n)) for n in names])
                                                           .map(list)),
             "by": st.sampled_from(["alice", "bob"]), "run_id": st.just("r1"), "reason": st.text(max_size=20)}
    spoil = {"env": envs, "reqs": st.one_of(st.lists(requests, max_size=3), st.just([])), "by": users,
             "run_id": run_ids, "reason": reasons}
    args = mostly_valid(data, valid, spoil)
    with registry_over(seeded_tree) as registry:
        before = files(registry.store.tree)
        try:
            registry.record_deployment(args["env"], args["reqs"], by=args["by"], run_id=args["run_id"], reason=args["reason"])
        except RegistryError as exc:
            assert field_of(str(exc)) in WRITE_FIELDS, exc
            assert files(registry.store.tree) == before and not registry.store.commits
            return
        state = registry.snapshot()
        assert len(state.entries) == len(seeded_state().entries) + len(args["reqs"]) and len(registry.store.commits) == 1
        for req in args["reqs"]:
            now = state.current(args["env"])[req.service]
            assert (now.version, now.image, now.deployed_by, now.run_id) == (req.version, req.image, args["by"], args["run_id"])


@fuzz(50)
@given(data=st.data())
def test_record_rollback_writes_what_was_asked_or_nothing(seeded_tree, data):
    seeded = seeded_state()
    valid = {"env": st.just("dev"), "services": st.sampled_from([["service-a"], ["service-a", "service-b"], ["service-b"]]),
             "by": st.just("alice"), "run_id": st.just("r1"), "reason": st.text(max_size=20),
             "to_version": st.sampled_from([None, "1.0", "1.1"]), "outcome": st.sampled_from(["rolled_back", "failed"]),
             "approved_by": st.sampled_from([None, "bob"])}
    spoil = {"env": envs, "services": st.one_of(st.lists(hostile(st.sampled_from(SERVICES)), max_size=3), junk),
             "by": users, "run_id": run_ids, "reason": reasons,
             "to_version": hostile(st.sampled_from(VERSIONS)), "outcome": hostile(st.sampled_from(["rolled_back", "failed"])),
             "approved_by": users}
    args = mostly_valid(data, valid, spoil)
    env, services = args["env"], args["services"]
    with registry_over(seeded_tree) as registry:
        before = files(registry.store.tree)
        try:
            registry.record_rollback(**args)
        except RegistryError as exc:
            message = str(exc)
            # A service with nothing to roll back to is named with its environment.
            assert field_of(message) in WRITE_FIELDS or f" in {env} " in message or f"deployed to {env}" in message, exc
            assert files(registry.store.tree) == before and not registry.store.commits
            return
        state = registry.snapshot()
        for service in services:
            was, now = seeded.current(env)[service], state.current(env)[service]
            assert now.version != was.version and now.version in seeded.deployed_versions(env, service)
            assert now.image == seeded.deployed_versions(env, service)[now.version].image
            assert args["to_version"] is None or now.version == args["to_version"]
            assert state.history(env=env, service=service)[-2].outcome == args["outcome"]
            assert now.approved_by == args["approved_by"]


UPDATES = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(CONFIG.env_order), nasty_text), st.one_of(st.dictionaries(
        st.one_of(st.sampled_from(SERVICES), nasty_text), st.one_of(
            st.fixed_dictionaries({"version": hostile(st.sampled_from(VERSIONS))},
                                  optional={"image": hostile(st.just(image("service-a", "c"))), "smoke": junk}),
            junk), max_size=2), junk), max_size=2),
    junk)


@fuzz(50)
@given(data=st.data())
def test_record_evidence_writes_to_what_runs_or_nothing(seeded_tree, data):
    seeded = seeded_state()
    valid = {"updates": st.sampled_from([
        {"dev": {"service-a": {"version": "2.0", "smoke": {"passed": True, "run_id": "r2"}}}},
        {"dev": {"service-a": {"version": "2.0", "image": image("service-a", "c"), "rescan": {"passed": True}}},
         "staging": {"service-a": {"version": "1.1", "smoke": {"passed": True}}}},
        {"dev": {"service-a": {"version": "1.0", "smoke": {"passed": True}}}},  # no longer runs: dropped
        {"prod": {"service-b": {"version": "1.0", "smoke": {"passed": True}}}},  # never ran: dropped
    ]), "by": st.just("alice"), "run_id": st.just("r1")}
    args = mostly_valid(data, valid, {"updates": UPDATES, "by": users, "run_id": run_ids})
    updates = args["updates"]
    with registry_over(seeded_tree) as registry:
        before = files(registry.store.tree)
        try:
            result = registry.record_evidence_across(**args)
        except RegistryError as exc:
            assert field_of(str(exc)).split(".")[0] in WRITE_FIELDS, exc
            assert files(registry.store.tree) == before and not registry.store.commits
            return
        state = registry.snapshot()
        landed = False
        for env, services in updates.items():
            for service, update in services.items():
                was = seeded.current(env).get(service)
                fields = {k: v for k, v in update.items() if k not in ("version", "image")}
                if was and was.version == update["version"] and update.get("image", was.image) == was.image:
                    assert all(state.current(env)[service].evidence[k] == v for k, v in fields.items())
                    landed = True
                elif was:
                    assert state.current(env)[service] == was  # late evidence never lands on another version
        assert (result.sha is not None) == landed
        if not landed:
            assert files(registry.store.tree) == before


# Refusals against a real GitOps repository: no commit.
REFUSED = [
    lambda r: r.record_deployment(["dev"], [DeployRequest("service-a", "1.0", image("service-a"))], by="alice", run_id="r"),
    lambda r: r.record_deployment("dev", [DeployRequest("service-a", "1.0\n", image("service-a"))], by="alice", run_id="r"),
    lambda r: r.record_deployment("dev", [DeployRequest("service-a", "1.0", image("service-a"), "evidence")],
                                  by="alice", run_id="r"),
    lambda r: r.record_rollback("dev", [["service-a"]], by="alice", run_id="r", reason=""),
    lambda r: r.record_rollback("dev", ["service-a"], by="alice\n", run_id="r", reason=""),
    lambda r: r.record_rollback("dev", ["service-a"], by="alice", run_id="r", reason="", outcome="deployed"),
    lambda r: r.record_rollback("dev", ["service-a"], by="alice", run_id="r", reason="", to_version=1.1),
    lambda r: r.record_rollback("dev", ["service-a"], by="alice", run_id="r", reason="", approved_by=7),
    lambda r: r.record_evidence("dev", {"service-a": {"smoke": {"passed": True}}}, by="alice", run_id="r"),  # KeyError
    lambda r: r.record_evidence("dev", ["service-a"], by="alice", run_id="r"),  # AttributeError
    lambda r: r.record_evidence("dev", {"service-a": "2.0"}, by="alice", run_id="r"),
]


def test_a_refused_write_makes_no_commit(registry, gitops_url):
    registry.record_deployment("dev", [DeployRequest("service-a", "0.9", image("service-a", "d"))], by="alice", run_id="r0")
    tip = head(gitops_url)
    for write in REFUSED:
        with pytest.raises(RegistryError):
            write(registry)
        assert head(gitops_url) == tip


# -- reading the registry's files -----------------------------------------------------------------

try:  # how a registry file broken by a hand edit is reported (file, line, what)
    from release.domain.registry_file import RegistryFileError
except ImportError:  # pragma: no cover - before that reporting exists
    RegistryFileError = None

RENDERED = seeded_state().render(CONFIG.env_order)


@st.composite
def edited_file(draw, name: str) -> str:
    """A registry file as the platform wrote it, with one value changed by hand."""
    import yaml

    data = yaml.safe_load(RENDERED[name])
    node, path = data, []
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 4)):
        key = draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
        if not isinstance(node[key], (dict, list)):
            break
        node, path = node[key], [*path, key]
    if isinstance(node, (dict, list)) and node:
        key = draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
        node[key] = draw(junk)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


BROKEN = ["environments: [dev]\n", "environments:\n  dev:\n    service-a: {version: 1.0\n", "entries: {a: 1}\n",
          "environments:\n  dev:\n    service-a:\n      version: '1.0'\n      version: '1.1'\n", "? [a]\n: b\n",
          "entries:\n- id: 1\n  at: 2026-13-45\n", "\x1f", "entries: !!python/object:os.system x\n", "a: &x [*x]\n"]


def registry_text(name: str) -> st.SearchStrategy:
    return st.one_of(st.none(), st.just(RENDERED[name]), edited_file(name), st.sampled_from(BROKEN), st.text(max_size=60))


@pytest.mark.skipif(RegistryFileError is None, reason="release.domain.registry_file (broken registry files named by file and line) is not here yet")
@fuzz(150)
@given(versions=registry_text("registry/versions.yaml"), history=registry_text("registry/history.yaml"))
def test_any_registry_files_read_as_a_state_or_name_the_file(versions, history):
    from release.domain.registry import HISTORY_FILE, VERSIONS_FILE, NoRollbackTarget

    try:
        state = RegistryState.parse(versions, history)
    except RegistryFileError as exc:
        assert exc.path in (VERSIONS_FILE, HISTORY_FILE) and exc.problem, exc
        return
    # What was read can be queried and written back.
    state.render(CONFIG.env_order)
    state.history()
    for env, services in state.environments.items():
        for service in services:
            try:
                state.rollback_target(env, service)
            except NoRollbackTarget:
                pass


def _outcome(read, name, text, schema):
    try:
        return read(name, text, schema)
    except RegistryFileError as exc:
        return ("refused", str(exc))


@pytest.mark.skipif(RegistryFileError is None, reason="release.domain.registry_file (broken registry files named by file and line) is not here yet")
@fuzz(150)
@given(versions=registry_text("registry/versions.yaml"), history=registry_text("registry/history.yaml"))
def test_the_fast_read_and_the_strict_read_agree_on_any_file(versions, history):
    """Large files are read fast; whatever that read does not vouch for is read strictly again:
    either way the same data, or the same refusal with the same file, line and words."""
    from release.domain import registry_file

    for name, text, schema in (("registry/versions.yaml", versions, registry_file.VersionsFile),
                               ("registry/history.yaml", history, registry_file.HistoryFile)):
        if not (text or "").strip():
            continue
        assert _outcome(registry_file.load, name, text, schema) == _outcome(registry_file._load_strict, name, text, schema)
