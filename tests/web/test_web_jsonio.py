"""JSON answers through orjson: Flask's documents, ending with a newline as Flask's `jsonify` does."""

from __future__ import annotations

import json

import pytest
from web_support import PATIENT


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/predict", PATIENT, 200),
        ("post", "/predict", [PATIENT, PATIENT], 200),
        ("post", "/predict", {**PATIENT, "age": "old"}, 422),
        ("get", "/model", None, 200),
        ("get", "/no-such-route", None, 404),
        ("delete", "/predict", None, 405),
    ],
    ids=["result", "array", "validation-error", "model", "not-found", "wrong-method"],
)
def test_every_json_answer_ends_with_one_newline(client, method, path, body, status):
    """Results and errors alike end with "\\n" (so `curl` output ends its line) and parse whole."""
    response = getattr(client, method)(path, json=body) if body is not None else getattr(client, method)(path)
    assert response.status_code == status and response.mimetype == "application/json"
    assert response.data.endswith(b"}\n") or response.data.endswith(b"]\n")
    assert not response.data.endswith(b"\n\n")
    assert json.loads(response.data) == response.json


def test_dumps_writes_no_newline(shared_app):
    """`app.json.dumps` (also Jinja's `tojson`) is the bare document, in the order given."""
    assert shared_app.json.dumps({"b": 1, "a": [1.5, None]}) == '{"b":1,"a":[1.5,null]}'


def test_an_answer_is_flasks_own_document_plus_its_newline(shared_app):
    """The body is what Flask's default provider writes (as a document), and ends as Flask's does."""
    from flask.json.provider import DefaultJSONProvider

    document = {"b": 1, "a": [1.5, None], "text": "é"}
    with shared_app.app_context():
        ours = shared_app.json.response(document).data
        flasks = DefaultJSONProvider(shared_app).response(document).data
    assert json.loads(ours) == json.loads(flasks) and ours.endswith(b"\n") and flasks.endswith(b"\n")
