"""The panel's static route: modules with CORS (amo imports them from the account's origin), no escape."""

from __future__ import annotations


def _get(client, path: str):  # type: ignore[no-untyped-def]
    response = client.get(path)
    response.close()  # a file response streams; close it so the file handle is released
    return response


def test_modules_are_served_with_cors_and_a_js_type(client):
    response = _get(client, "/static/widget/common/panel.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert _get(client, "/static/widget/demo/").status_code == 200


def test_nothing_outside_the_widget_folder_is_served(client):
    for path in ("/static/widget/../../pyproject.toml", "/static/widget/%2e%2e/%2e%2e/pyproject.toml"):
        assert _get(client, path).status_code == 404
    assert _get(client, "/static/widget/common/nope.js").status_code == 404


def test_a_response_nobody_finishes_leaves_no_file_open(app):
    # A browser that drops the connection mid-transfer means the server never closes the response.
    import gc
    import warnings

    from widget_server.http.widget_static import widget_file

    with app.test_request_context("/static/widget/common/sections/invoices.js"):
        response = widget_file("common/sections/invoices.js")
    assert response.get_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del response
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
