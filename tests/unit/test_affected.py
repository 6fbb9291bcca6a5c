"""Change detection: which services a set of changed paths affects."""

from __future__ import annotations

import random
import warnings

import pytest
from pathspec import PathSpec

from release.domain.affected import AffectedIndex, naive_affected, services_of, validate_paths
from release.domain.config import load_config

ALL = ["service-a", "service-b", "service-c"]


@pytest.fixture(scope="module")
def index() -> AffectedIndex:
    return AffectedIndex.from_config(load_config())  # the shipped config: services/service-{a,b,c}/


@pytest.mark.parametrize(
    "paths, expected",
    [
        (["services/service-a/src/app.py"], ["service-a"]),  # one service's file
        (["shared/logging/log.py"], ALL),  # every service watches shared/**
        (["docs/index.md", "README.md", "docs/services/service-a.md"], []),  # docs only
        (["services/service-ab/main.py", "services/service-a.old/x", "services/service-a-v2"], []),  # look-alikes
        (["sharedlib/x.py", "shared", "proto/searching/a.proto", "proto/search"], []),  # `shared/**` is under shared/
        (["proto/search/v1/query.proto"], ["service-c"]),  # only service-c watches proto/search/**
        (["services/service-b", "services/service-c/"], ["service-b", "service-c"]),  # the folder itself
        (["./services/service-c/x.py", "/services/service-a/y.py"], ["service-a", "service-c"]),
        ([".//shared/x.py"], ALL),
        (["services/service-c/a.py", "services/service-b/b.py", "services/service-a/c.py"], ALL),  # config order
        ([], []),
        (["", "./", "/"], []),
    ],
)
def test_shipped_config(index, paths, expected):
    assert index.affected(paths) == expected
    assert naive_affected(services_of(load_config()), paths) == expected


def test_generators_and_sets_are_accepted_but_not_a_single_string(index):
    assert index.affected(p for p in ["shared/a"]) == ALL
    assert index.affected({"services/service-b/x"}) == ["service-b"]
    with pytest.raises(TypeError, match="not one string"):
        index.affected("services/service-a/x")  # would otherwise test 's', 'e', ... one by one


def test_results_keep_config_order_not_alphabetical():
    index = AffectedIndex({"zeta": ("services/zeta/", []), "alpha": ("services/alpha/", ["shared/**"])})
    assert index.affected(["services/alpha/x", "services/zeta/y"]) == ["zeta", "alpha"]
    # The first service found by a pattern, the ninth by its folder: no accidental order.
    services = {"docs-bot": ("tools/docs-bot/", ["*.md"])} | {f"s{i}": (f"services/s{i}/", []) for i in range(1, 9)}
    assert AffectedIndex(services).affected(["services/s8/x.py", "docs/README.md"]) == ["docs-bot", "s8"]


NEGATING = {
    "api": ("services/api/", ["shared/**", "!shared/testdata/**", "shared/testdata/golden/**"]),
    "web": ("services/web/", ["shared/**", "!*.md"]),
    "excluded-only": ("services/x/", ["!shared/**"]),  # an exclusion alone includes nothing
}


@pytest.mark.parametrize(
    "paths, expected",
    [
        (["shared/testdata/big.json"], ["web"]),  # excluded for api
        (["shared/testdata/golden/out.json"], ["api", "web"]),  # re-included by a later pattern
        (["shared/README.md"], ["api"]),  # excluded for web
        (["shared/README.md", "shared/testdata/x"], ["api", "web"]),  # each by a different path
        (["shared/lib.py"], ["api", "web"]),
        (["services/x/main.go"], ["excluded-only"]),  # its own folder still counts
    ],
)
def test_exclusions_follow_gitignore_order(paths, expected):
    assert AffectedIndex(NEGATING).affected(paths) == expected
    assert naive_affected(NEGATING, paths) == expected


def test_patterns_have_gitwildmatch_semantics():
    patterns = ["*.md", "/Makefile", "docs/**/*.md", "a/b", "a/b/", "**/openapi.yaml", "svc?/**", "[ab]/**",
                "a\\*b/**", "service-a", "x/**/", "**"]
    paths = ["README.md", "x/y/README.md", "Makefile", "sub/Makefile", "docs/a/b/c.md", "docs/c.md", "a/b",
             "a/b/c", "q/a/b", "z/openapi.yaml", "svc1/x", "svc12/x", "a/x", "c/x", "a*b/x", "axb/x",
             "services/service-a/x", "service-a", "x/y/z", "x"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 'gitwildmatch' is deprecated in pathspec 1.x
        for pattern in patterns:
            spec = PathSpec.from_lines("gitwildmatch", [pattern])
            services = {"s": ("elsewhere/", [pattern])}
            for path in paths:
                expected = ["s"] if spec.match_file(path) else []
                assert AffectedIndex(services).affected([path]) == expected, (pattern, path)
                assert naive_affected(services, [path]) == expected, (pattern, path)


SEGMENTS = ["services", "service-a", "service-ab", "svc1", "shared", "testdata", "proto", "search", "docs",
            "a", "b", "x.md", "main.py", "openapi.yaml", "Makefile", "a*b", "api"]
PATTERNS = ["shared/**", "/shared/**", "shared/", "shared", "proto/search/**", "*.md", "**/*.md", "docs/**/*.md",
            "services/*/api/**", "!shared/testdata/**", "!*.md", "a/b", "a/b/", "/Makefile", "**/openapi.yaml",
            "svc?/**", "[ab]/**", "a\\*b/**", "**", "# comment", "", "shared/**/testdata/*", "!docs/",
            "service-a*/**", "services/service-a", "search/"]


def random_path(rng: random.Random) -> str:
    path = "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(1, 5)))
    return rng.choice(["", "", "", "./", "/"]) + path + rng.choice(["", "", "", "", "/"])


def random_services(rng: random.Random) -> dict[str, tuple[str, list[str]]]:
    services = {}
    for i in range(rng.randint(1, 8)):
        folder = "/".join(rng.choice(SEGMENTS[:10]) for _ in range(rng.randint(1, 3)))
        folder = rng.choice([folder, folder + "/", "./" + folder + "/", "./"] if rng.random() < 0.1 else [folder + "/"])
        services[f"s{i}"] = (folder, rng.sample(PATTERNS, rng.randint(0, 4)))
    return services


def test_randomized_equal_to_naive():
    rng = random.Random(20260101)
    for _ in range(600):
        services = random_services(rng)
        paths = [random_path(rng) for _ in range(rng.randint(0, 40))]
        assert AffectedIndex(services).affected(paths) == naive_affected(services, paths), (services, paths)


def test_validate_paths_normalises_good_paths():
    assert validate_paths(["./services/service-a/x.py", "/shared/y", "services/service-b/", ".github/ci.yml"]) == [
        "services/service-a/x.py", "shared/y", "services/service-b/", ".github/ci.yml"]
    assert validate_paths(iter([])) == []


@pytest.mark.parametrize(
    "bad, problem",
    [
        ("", "is empty"),
        ("./", "is empty"),
        ("services/service-a/../service-b/x", "'..' segment"),
        ("..", "'..' segment"),
        ("a/./b", "'.' segment"),
        ("a//b", "empty segment"),
        ("a\x00b", "NUL or newline"),
        ("a\nb", "NUL or newline"),
        ("a\rb", "NUL or newline"),
        ("x" * 4097, "longer than 4096"),
        (None, "NoneType, not a string"),
        (7, "int, not a string"),
    ],
)
def test_validate_paths_rejects_naming_the_entry(bad, problem):
    with pytest.raises(ValueError) as exc:
        validate_paths(["services/service-a/ok.py", bad])
    message = str(exc.value)
    assert message.startswith(f"paths[1] {repr(bad)[:20]}") and problem in message
    assert len(message) < 200  # a 4 KiB value is truncated, not echoed into logs


def test_validate_paths_wants_a_list():
    with pytest.raises(ValueError, match="list of repository paths"):
        validate_paths("services/service-a/x.py")
    assert validate_paths(["x" * 4096]) == ["x" * 4096]
