"""The service against its own OpenAPI document, as a schema-driven client sees it (schemathesis): for
positive and negative examples of every operation, no 5xx, only documented statuses and content types, and
bodies that match the documented schemas. Bounded (a few hundred calls, seconds) and derandomized, so that
the run is the same on every machine."""

import tempfile

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from magenta_api.testing import make_app

WORK = tempfile.TemporaryDirectory(prefix="magenta-api-openapi-")  # lives as long as the test module
APP = make_app(WORK.name, entry_points=["musicvae", "melody_rnn", "embedded"])
schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", APP)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@schema.parametrize()
@settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_document(case):
    # A 422 for a schema-valid body is the API's meaning ("valid, but this model cannot do it"), so the
    # check that every schema-valid body is accepted does not apply; every other check does.
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    assert response.status_code < 500


def test_the_document_offers_one_body_schema_per_model():
    doc = APP.test_client().get("/v1/openapi.json").get_json()
    bodies = doc["components"]["schemas"]["GenerateBody"]["oneOf"]
    names = {b["$ref"].rsplit("/", 1)[-1] for b in bodies}
    assert {"GenerateFor_embedded-mel_2bar", "GenerateFor_embedded-basic_rnn"} <= names
    mel = doc["components"]["schemas"]["GenerateFor_embedded-mel_2bar"]
    assert mel["additionalProperties"] is False and "similarity" in mel["properties"]
    assert mel["properties"]["mode"]["enum"] == ["sample", "interpolate", "similar", "encode", "decode"]
    assert {"500", "503"} <= set(doc["paths"]["/v1/generate"]["post"]["responses"])
