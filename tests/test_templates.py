"""Templates: sandboxed, strict, visibility from the registry; customer text is data only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from automation.cli.check import sample_context
from automation.config import Config, parse
from automation.errors import TemplateError
from automation.facts import template_context
from automation.model import Assessment, State
from automation.templates import REGISTRY, SUFFIX, Templates, Visibility
from tests.factories import (
    at,
    customer,
    description,
    make_organization,
    make_snapshot,
)

BRIDGE = "https://bridge.example.net/j/5550100"
MARKER = "Zq9 Plain Name"
JINJA_PAYLOADS = [
    "{{ 6*7*1001 }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "{% for %}",
    "{{ ticket.__class__ }}",
    "{# hidden #}{{",
]
PUBLIC = sorted(name for name, vis in REGISTRY.items() if vis is Visibility.PUBLIC)
INTERNAL = sorted(name for name, vis in REGISTRY.items() if vis is Visibility.INTERNAL)


def make_config(tmp_path: Path, **workflow: Any) -> Config:
    raw = {"zendesk": {"url": "https://acme.zendesk.com", "email": "bot@acme.example"},
           "workflow": {"bridge_url": BRIDGE, **workflow}}
    return parse(raw, tmp_path / "config.toml")


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def context(cfg: Config) -> dict[str, Any]:
    return sample_context(cfg)


def override(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / (name + SUFFIX)).write_text(source, encoding="utf-8")
    return folder


def render_override(tmp_path: Path, context: dict[str, Any], source: str,
                    name: str = "follow_up"):
    folder = override(tmp_path / "overrides", name, source)
    return Templates(folder).render(name, context)


# What the shipped templates say ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_template_renders_with_realistic_context(name, context):
    # when a shipped template is rendered with the sample data `emergency check` uses
    rendered = Templates().render(name, context)

    # then it says something, and nothing of the template syntax is left
    assert rendered.template == name
    assert rendered.body.strip()
    assert rendered.body == rendered.body.strip()
    for syntax in ("{{", "}}", "{%", "%}"):
        assert syntax not in rendered.body


def test_every_registered_template_ships_and_renders(context):
    templates = Templates()
    rendered = [templates.render(name, context) for name in sorted(REGISTRY)]
    assert sorted(r.template for r in rendered) == sorted(REGISTRY)
    assert all(r.body.strip() for r in rendered)


def test_follow_up_carries_the_runbooks_four_points(tmp_path):
    # given a config with its own bridge and a 20-minute close
    cfg = make_config(tmp_path, close_after_minutes=20)

    # when the follow-up is rendered
    body = Templates().render("follow_up", sample_context(cfg)).body

    # then it names the bridge, other arrangements, the close and HIGH, and a new emergency
    assert BRIDGE in body
    assert "other arrangements" in body
    assert any("20 minutes" in line and "HIGH" in line for line in body.splitlines())
    assert "new emergency" in body
    assert "15 minutes" not in body  # the close duration comes from the config


def test_follow_up_addresses_the_requester_and_is_signed(tmp_path):
    cfg = make_config(tmp_path, signature="Acme Support On-Call")
    body = Templates().render("follow_up", sample_context(cfg)).body
    assert body.startswith("Hello Dana Customer,")
    assert body.endswith("Acme Support On-Call")


def test_acknowledgement_offers_the_bridge(context):
    body = Templates().render("acknowledgement", context).body
    assert BRIDGE in body
    assert "call" in body.lower()
    assert "Dana Customer" in body


def test_bridge_closed_says_high_and_the_whole_wait(tmp_path):
    # given 10 minutes to follow up and 20 more to close
    cfg = make_config(tmp_path, follow_up_after_minutes=10, close_after_minutes=20)

    # when the closing note is rendered
    body = Templates().render("bridge_closed", sample_context(cfg)).body

    # then it says HIGH and the 30 minutes since contact
    assert "HIGH" in body
    assert "30 minutes" in body


# Customer text is data ------------------------------------------------------------------------


def customer_context(cfg: Config, text: str) -> dict[str, Any]:
    """The sample context, with the subject, requester and organization names set to ``text``
    through the worker's own context builder (the path customer data takes in production)."""
    snapshot = make_snapshot([description()], subject=text, people={1: customer(name=text)})
    assessment = Assessment(ticket_id=snapshot.ticket.id, state=State.AWAITING_CUSTOMER,
                            next_step=None, due_at=None, contact_at=at(2))
    customer_data = template_context(snapshot, assessment, cfg.workflow, cfg.policy,
                                     make_organization(name=text), at(17))
    return {**sample_context(cfg), **customer_data}


@pytest.mark.parametrize("payload", JINJA_PAYLOADS)
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_customer_names_with_jinja_syntax_are_rendered_literally(cfg, name, payload):
    # given the same ticket once with plain names and once with names that look like Jinja
    plain = Templates().render(name, customer_context(cfg, MARKER)).body

    # when rendered with the hostile names
    hostile = Templates().render(name, customer_context(cfg, payload)).body

    # then the only difference is the names, verbatim: they were data, never evaluated
    assert hostile == plain.replace(MARKER, payload)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_templates_greet_the_requester_by_name(cfg, name):
    body = Templates().render(name, customer_context(cfg, "{{ 6*7*1001 }}")).body
    assert body.startswith("Hello {{ 6*7*1001 }},")
    assert "42042" not in body


@pytest.mark.parametrize("payload", JINJA_PAYLOADS)
def test_customer_subject_with_jinja_syntax_is_rendered_literally(tmp_path, cfg, payload):
    # given a template that quotes the subject, and a subject that looks like template code
    context = customer_context(cfg, payload)

    # when rendered
    rendered = render_override(tmp_path, context, "Re: {{ ticket.subject }} (#{{ ticket.id }})",
                               name="acknowledgement")

    # then the subject is there verbatim
    assert rendered.body == f"Re: {payload} (#{context['ticket']['id']})"


# Visibility comes from the registry -----------------------------------------------------------


@pytest.mark.parametrize(("name", "visibility"), sorted(REGISTRY.items()))
def test_visibility_comes_from_the_registry_not_the_context(name, visibility, context):
    # given a context that tries to choose the opposite visibility
    context = {**context, "public": visibility is not Visibility.PUBLIC,
               "visibility": "public" if visibility is Visibility.INTERNAL else "internal"}

    # when rendered
    rendered = Templates().render(name, context)

    # then the registry decides
    assert rendered.public is (visibility is Visibility.PUBLIC)


def test_there_is_an_internal_template_and_it_is_never_public(context):
    # given every template the registry marks internal
    assert INTERNAL, "the registry has no internal template to check"

    # when each is rendered, then none comes out public
    for name in INTERNAL:
        assert Templates().render(name, context).public is False, name


@pytest.mark.parametrize("name", INTERNAL)
def test_an_override_cannot_make_an_internal_template_public(tmp_path, context, name):
    rendered = render_override(tmp_path, context, "Posted by {{ engineer }}", name=name)
    assert rendered.body == "Posted by Sam Engineer"
    assert rendered.public is False


# Overrides ------------------------------------------------------------------------------------


def test_override_folder_replaces_one_template_and_the_others_stay_default(tmp_path, context):
    # given an override folder with only a follow-up
    folder = override(tmp_path / "overrides", "follow_up", "Custom follow-up: {{ bridge_url }}")
    templates = Templates(folder)

    # when the follow-up and the acknowledgement are rendered
    follow_up = templates.render("follow_up", context)
    acknowledgement = templates.render("acknowledgement", context)

    # then the follow-up is the override and the acknowledgement the shipped one
    assert follow_up.body == f"Custom follow-up: {BRIDGE}"
    assert acknowledgement.body == Templates().render("acknowledgement", context).body
    assert follow_up.public is True


# Errors ---------------------------------------------------------------------------------------


def test_syntax_error_names_the_template_file_and_line(tmp_path, context):
    source = "Hello {{ requester.name }},\n\n{% for %}\n"
    with pytest.raises(TemplateError) as caught:
        render_override(tmp_path, context, source)
    message = str(caught.value)
    assert "follow_up.j2" in message
    assert "line 3" in message


def test_unclosed_block_is_a_template_error_naming_the_file(tmp_path, context):
    with pytest.raises(TemplateError, match=r"follow_up\.j2"):
        render_override(tmp_path, context, "{% if contact_at %}\nNo end\n")


def test_unknown_filter_is_a_template_error_naming_the_file_and_line(tmp_path, context):
    with pytest.raises(TemplateError) as caught:
        render_override(tmp_path, context, "a\n{{ bridge_url | shout }}\n")
    assert "follow_up.j2" in str(caught.value)
    assert "line 2" in str(caught.value)


@pytest.mark.parametrize("source", ["Line one\nLine two\n{{ bridge_link }}\n",
                                    "Line one\nLine two\n{{ requester.nmae }}\n",
                                    "Line one\nLine two\n{% if missing_flag %}x{% endif %}\n"])
def test_undefined_variable_names_the_template_file_and_line(tmp_path, context, source):
    with pytest.raises(TemplateError) as caught:
        render_override(tmp_path, context, source)
    message = str(caught.value)
    assert "follow_up.j2" in message
    assert "line 3" in message


def test_shipped_template_missing_a_variable_is_a_template_error(context):
    # given a context without the bridge
    del context["bridge_url"]

    # when the acknowledgement is rendered
    with pytest.raises(TemplateError) as caught:
        Templates().render("acknowledgement", context)

    # then the error names the template and the variable
    assert "acknowledgement.j2" in str(caught.value)
    assert "bridge_url" in str(caught.value)


@pytest.mark.parametrize("name", ["welcome", "follow-up", "../config", ""])
def test_unknown_template_name_is_a_template_error(name, context):
    with pytest.raises(TemplateError, match="unknown template"):
        Templates().render(name, context)


def test_a_file_in_the_override_folder_does_not_register_a_template(tmp_path, context):
    folder = override(tmp_path / "overrides", "welcome", "Welcome {{ requester.name }}")
    with pytest.raises(TemplateError, match="unknown template 'welcome'"):
        Templates(folder).render("welcome", context)


@pytest.mark.parametrize("source", [
    "{{ ticket.__class__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ requester.name.__class__.__mro__[1].__subclasses__() }}",
    "{{ ticket | attr('__class__') }}",
    "{{ '{0.__class__}'.format(ticket) }}",
    "{{ now.__class__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_sandbox_refuses_access_to_internals(tmp_path, context, source):
    with pytest.raises(TemplateError) as caught:
        render_override(tmp_path, context, "Hello\n" + source)
    message = str(caught.value)
    assert "follow_up.j2" in message
    assert "line 2" in message


@pytest.mark.parametrize("source", ["{{ range(10 ** 6) | list }}",
                                    "{{ close_after.total_seconds() // 0 }}"])
def test_runtime_errors_in_a_template_are_template_errors(tmp_path, context, source):
    with pytest.raises(TemplateError, match=r"follow_up\.j2"):
        render_override(tmp_path, context, "Hello\n" + source)


@pytest.mark.parametrize("source", ["", "   \n\n", "{% if false %}Never{% endif %}\n",
                                    "{{ '' }}\n"])
def test_empty_render_is_a_template_error(tmp_path, context, source):
    with pytest.raises(TemplateError, match=r"follow_up\.j2.*empty"):
        render_override(tmp_path, context, source)


def readme_template_variables() -> dict[str, set[str]]:
    """What README's "Template variables" says each template gets (a variable's fields, in
    parentheses, aside)."""
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("- **Template variables:**"):]
    section = re.sub(r"\([^)]*\)", "", section[:section.index("\n\n## ")])
    intro, table = section.split("Besides those:")
    common = set(re.findall(r"`(\w+)`", intro.split("Every ticket template:")[1]))
    documented: dict[str, set[str]] = {}
    for row in table.strip().splitlines()[2:]:
        names, extras = row.strip().strip("|").split("|")
        for name in re.findall(r"`(\w+)`", names):
            own = set(re.findall(r"`(\w+)`", extras))
            documented[name] = own if "only these" in names else own | common
    return documented


def test_readme_names_every_variable_each_template_gets(cfg: Config) -> None:
    from automation.shapes import contexts, shapes

    given: dict[str, set[str]] = {}
    for shape in shapes():
        for name, context in contexts(shape, cfg):
            given.setdefault(name, set()).update(context)
    documented = readme_template_variables()

    assert set(documented) == set(REGISTRY)
    for name in REGISTRY:
        assert documented.get(name) == given[name], name
