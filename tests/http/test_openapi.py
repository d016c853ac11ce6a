from __future__ import annotations


def test_openapi_document_describes_the_api(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    note = spec["paths"]["/api/v1/deals/{deal_id}/notes"]["post"]
    assert note["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/NoteRequest")
    assert any(p["name"] == "Idempotency-Key" for p in note["parameters"])
    assert {"202", "401", "403", "409", "422"} <= set(note["responses"])
    assert "staff" in note["description"]
    text = spec["components"]["schemas"]["NoteRequest"]["properties"]["text"]
    assert text["minLength"] == 1 and text["maxLength"] == 20000
    assert spec["components"]["schemas"]["Error"]["properties"]["error"]
    assert "/api/v1/outbox/{job_id}/retry" in spec["paths"]
    params = spec["paths"]["/api/v1/outbox/{job_id}"]["parameters"]
    assert params == [{"in": "path", "name": "job_id", "required": True, "schema": {"type": "integer"}}]
