"""`config check --codeowners`: services whose owners disagree with CODEOWNERS, as GitHub reads it."""

from __future__ import annotations

import textwrap

from release.cli import main
from release.github.codeowners import check, parse

AGREEING = textwrap.dedent("""\
    # Default owners, then the services: the last matching line wins, as on GitHub.
    *                         @example-org/platform
    /services/service-a/      @team-payments
    services/service-b/**     @Team-Catalog
    /services/service-c/      @team-search   # search owns its service
    /services/service-c/docs/ @example-org/writers
""")


def test_owners_that_agree_pass(config):
    disagreements, problems = check(config, AGREEING)
    assert (disagreements, problems) == ([], [])


def test_the_last_matching_line_wins_and_every_disagreement_is_named(config):
    text = AGREEING + "services/**  @example-org/everyone\n/services/service-b/ \n"
    disagreements, _ = check(config, text)
    described = [d.describe() for d in disagreements]
    assert described == [
        "services.service-a.owners: @team-payments for services/service-a/, but CODEOWNERS line 7 `services/**` gives @example-org/everyone",
        "services.service-b.owners: @team-catalog for services/service-b/, but CODEOWNERS line 8 `/services/service-b/` gives no owner",
        "services.service-c.owners: @team-search for services/service-c/, but CODEOWNERS line 7 `services/**` gives @example-org/everyone",
    ]


def test_a_folder_no_line_covers_is_reported(config):
    disagreements, _ = check(config, "/docs/ @example-org/writers\n/services/service-a/ @team-payments\n")
    assert [(d.service, d.codeowners) for d in disagreements] == [("service-b", None), ("service-c", None)]
    assert disagreements[0].describe().endswith("but no CODEOWNERS line covers it")


def test_lines_github_skips_are_reported():
    rules, problems = parse("!/services/ @x\n/services/[ab]/ @x\n/services/ team-without-at\n/ok/ @a @b/c me@example.com\n")
    assert [r.pattern for r in rules] == ["/ok/"] and len(problems) == 3
    assert "line 1" in problems[0] and "line 3" in problems[2] and "team-without-at" in problems[2]


def test_cli(tmp_path, capsys):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text(AGREEING)
    bad.write_text("* @someone-else\n")
    assert main(["config", "check", "--codeowners", str(good)]) == 0
    assert capsys.readouterr().out.strip() == "OK"
    assert main(["config", "check", "--codeowners", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("CODEOWNERS line 1 `*` gives @someone-else") == 3
    assert main(["config", "check", "--codeowners", str(tmp_path / "missing")]) == 1
    assert "cannot read" in capsys.readouterr().err
