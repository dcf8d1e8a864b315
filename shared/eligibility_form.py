"""The eligibility step's form, for every page that asks it: the queue page (the edge,
:mod:`waitingroom.eligibility`) and the waitlist claim page (the booking API,
:mod:`admission.claim_page`).

One place renders a published rule set's attribute schema as form fields (labels and help in the
page's language, one input per attribute type; ``verified`` attributes are not asked, they come from
the ID token), renders a decision in plain words (the outcome, each reason's text, what to do next),
and reads a submitted form back as the body ``POST /api/v1/events/{id}/eligibility:evaluate`` takes.
Plain HTML with every value escaped; no script, so it fits a page whose Content-Security-Policy
allows none. Which service decides is the caller's business: always :func:`shared.eligibility.decide`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.rules import MAX_LIST

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "heading": "Check that you can book",
        "intro": "Answer these questions while you wait: you keep your place in the queue. When it is your "
        "turn, you can book only once the answer is yes.",
        "id_number": "ID number",
        "birth_date": "Date of birth",
        "yes": "Yes",
        "no": "No",
        "choose": "Choose…",
        "list_help": "Separate several with commas.",
        "verified_note": "These come from your verified identity, not from this form: {names}.",
        "id_token": "Identity token from the program's sign-in service",
        "id_token_help": "The program checks who you are with its sign-in service; paste the token it gave you.",
        "check": "Check my eligibility",
        "check_again": "Check again",
        "checking": "Checking…",
        "eligible": "You are eligible: you can book an appointment.",
        "ineligible": "You are not eligible for this program, for these reasons:",
        "next_eligible": "This answer is valid until {time}. The booking checks the rules again.",
        "next_ineligible": "If an answer was wrong, correct it and check again. If you think the rules were "
        "applied wrongly, contact support with this reference: {id}.",
        "expired": "Your eligibility answer has expired: check again.",
        "book_blocked": "Check your eligibility above before booking.",
        "error_identity_required": "This program needs proof of who you are from its sign-in service: sign in "
        "there, then check again.",
        "error_rate_limited": "Too many checks in a short time: wait a minute, then try again.",
        "error_validation_error": "Some answers are missing or not valid: check them and try again.",
        "error_ticket_invalid": "Join the queue first (or reload this page), then check again.",
        "error_generic": "The check could not be made right now: try again in a moment.",
    },
    "es": {
        "heading": "Compruebe si puede reservar",
        "intro": "Responda a estas preguntas mientras espera: conserva su lugar en la fila. Cuando sea su turno, "
        "solo podrá reservar si la respuesta es sí.",
        "id_number": "Número de documento",
        "birth_date": "Fecha de nacimiento",
        "yes": "Sí",
        "no": "No",
        "choose": "Elija…",
        "list_help": "Separe varios con comas.",
        "verified_note": "Estos datos proceden de su identidad verificada, no de este formulario: {names}.",
        "id_token": "Token de identidad del servicio de acceso del programa",
        "id_token_help": "El programa comprueba quién es usted con su servicio de acceso; pegue el token que le dio.",
        "check": "Comprobar mi elegibilidad",
        "check_again": "Volver a comprobar",
        "checking": "Comprobando…",
        "eligible": "Es elegible: puede reservar una cita.",
        "ineligible": "No es elegible para este programa, por estos motivos:",
        "next_eligible": "Esta respuesta es válida hasta {time}. La reserva vuelve a comprobar las reglas.",
        "next_ineligible": "Si alguna respuesta era incorrecta, corríjala y vuelva a comprobarlo. Si cree que las "
        "reglas se aplicaron mal, contacte con soporte indicando esta referencia: {id}.",
        "expired": "Su respuesta de elegibilidad ha caducado: vuelva a comprobarlo.",
        "book_blocked": "Compruebe su elegibilidad arriba antes de reservar.",
        "error_identity_required": "Este programa necesita comprobar quién es usted con su servicio de acceso: "
        "identifíquese allí y vuelva a comprobarlo.",
        "error_rate_limited": "Demasiadas comprobaciones en poco tiempo: espere un minuto y vuelva a intentarlo.",
        "error_validation_error": "Faltan respuestas o alguna no es válida: revíselas y vuelva a intentarlo.",
        "error_ticket_invalid": "Únase primero a la fila (o vuelva a cargar esta página) y compruébelo de nuevo.",
        "error_generic": "No se pudo hacer la comprobación ahora: vuelva a intentarlo en un momento.",
    },
}


@dataclass(frozen=True)
class Step:
    """What a page asks: the published version's attributes, and whether an ID token is needed."""

    rule_version: int
    attributes: Mapping[str, Mapping[str, Any]]
    identity: bool  # the event names an identity provider: the form asks for its ID token

    @property
    def asked(self) -> dict[str, Mapping[str, Any]]:
        return {n: a for n, a in self.attributes.items() if a.get("source", "declared") != "verified"}

    @property
    def verified(self) -> dict[str, Mapping[str, Any]]:
        return {n: a for n, a in self.attributes.items() if a.get("source") == "verified"}


# --- rendering ---------------------------------------------------------------------------------------


def text_of(spec: Mapping[str, Any], key: str, language: str) -> str:
    """An attribute's ``label`` or ``help`` in ``language`` (English when it has none)."""
    value = spec.get(key)
    if isinstance(value, Mapping):
        return str(value.get(language) or value.get("en") or "")
    return str(value or "")


def _input(name: str, spec: Mapping[str, Any], t: Mapping[str, str], value: Any, described: str) -> str:
    e = html.escape
    field_id, kind = f"el_{name}", spec.get("type")
    attrs = f'id="{field_id}" name="a_{name}" data-type="{e(str(kind))}"{described}'
    if kind == "bool":
        options = "".join(
            f'<label class="choice"><input type="radio" name="a_{name}" data-type="bool" value="{v}" required'
            f"{' checked' if value == flag else ''}{described}> {e(t[v])}</label>"
            for v, flag in (("yes", True), ("no", False))
        )
        return f'<div class="choices" id="{field_id}" role="radiogroup">{options}</div>'
    if kind == "enum":
        options = f'<option value="">{e(t["choose"])}</option>' + "".join(
            f'<option value="{e(v)}"{" selected" if v == value else ""}>{e(v)}</option>'
            for v in spec.get("values") or ()
        )
        return f"<select {attrs} required>{options}</select>"
    shown = "" if value is None else (", ".join(value) if isinstance(value, list) else str(value))
    typed = {"int": ' type="number" step="1" inputmode="numeric"', "date": ' type="date"'}.get(str(kind), "")
    return f'<input {attrs}{typed} value="{e(shown)}" maxlength="500" required>'


def question(name: str, spec: Mapping[str, Any], language: str, value: Any) -> str:
    """One attribute's label, help and input (``a_<name>``, id ``el_<name>``)."""
    e, t = html.escape, STRINGS[language]
    label = text_of(spec, "label", language) or name
    help_text = text_of(spec, "help", language)
    if spec.get("type") == "list":
        help_text = f"{help_text} {t['list_help']}".strip()
    described = f' aria-describedby="el_{name}_help"' if help_text else ""
    if spec.get("type") == "bool":  # a group of radios: its question is a paragraph, not one input's label
        label_html = f'<p class="question">{e(label)}</p>'
    else:
        label_html = f'<label class="question" for="el_{name}">{e(label)}</label>'
    help_html = f'<p class="help" id="el_{name}_help">{e(help_text)}</p>' if help_text else ""
    return label_html + help_html + _input(name, spec, t, value, described)


def questions(step: Step, language: str, values: Mapping[str, Any] | None = None) -> str:
    """The rule set's own questions (the person's id number and birth date are the page's): one per
    declared attribute, a note naming the verified ones, and the ID token field when the event has
    an identity provider. ``values`` fills answers back in (never a verified one)."""
    e, t = html.escape, STRINGS[language]
    values = values or {}
    parts = [question(n, spec, language, values.get(n)) for n, spec in step.asked.items()]
    if step.verified:
        names = ", ".join(text_of(spec, "label", language) or n for n, spec in step.verified.items())
        parts.append(f'<p class="note">{e(t["verified_note"].format(names=names))}</p>')
    if step.identity:
        parts.append(
            f'<label for="el_id_token">{e(t["id_token"])}</label>'
            f'<p class="help" id="el_id_token_help">{e(t["id_token_help"])}</p>'
            '<textarea id="el_id_token" name="id_token" rows="3" maxlength="16384" autocomplete="off" '
            'aria-describedby="el_id_token_help"></textarea>'
        )
    return "".join(parts)


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def render_decision(decision: Mapping[str, Any], language: str) -> str:
    """The decision (the evaluate answer's JSON) in plain words: the outcome, each reason's text,
    and what to do next."""
    e, t = html.escape, STRINGS[language]
    reasons = "".join(f"<li>{e(str(r.get('text') or r.get('code')))}</li>" for r in decision.get("reasons") or ())
    if decision.get("eligible"):
        outcome = f'<p class="state" id="eligibility-outcome">{e(t["eligible"])}</p>'
        after = t["next_eligible"].format(time=_when(str(decision.get("valid_until", ""))))
    else:
        outcome = f'<p class="state" id="eligibility-outcome">{e(t["ineligible"])}</p>'
        outcome += f'<ul id="eligibility-reasons">{reasons}</ul>'
        after = t["next_ineligible"].format(id=decision.get("decision_id", ""))
    return outcome + f'<p id="eligibility-next">{e(after)}</p>'


# --- reading a form back ---------------------------------------------------------------------------


def _coerce(spec: Mapping[str, Any], raw: list[str]) -> Any:
    """A form answer as the JSON the API takes (a value that does not convert goes as typed: the API
    answers 400 naming the attribute)."""
    kind, text = spec.get("type"), (raw[0].strip() if raw else "")
    if kind == "bool":
        return {"yes": True, "no": False}.get(text, text)
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            return text
    if kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()][:MAX_LIST]
    return text


def evaluate_body(form: Mapping[str, Any], step: Step) -> dict[str, Any]:
    """The evaluate request a form stands for (``id_number``, ``birth_date``, ``a_<attribute>``,
    ``id_token``); a verified attribute typed into it is not sent: only the token proves it."""
    getall = form.getall if hasattr(form, "getall") else (lambda key, default: [form[key]] if key in form else default)
    attributes = {name: _coerce(spec, [str(v) for v in getall(f"a_{name}", [])]) for name, spec in step.asked.items()}
    body: dict[str, Any] = {
        "person": {
            "id_number": str(form.get("id_number") or "").strip(),
            "birth_date": str(form.get("birth_date") or ""),
        },
        "attributes": attributes,
    }
    token = str(form.get("id_token") or "").strip()
    if token:
        body["id_token"] = token
    return body
