import pytest

from tests.conftest import STAFF_PASSWORD


@pytest.mark.django_db
def test_staff_login_is_locked_after_five_failures(settings, staff_user_factory, client):
    settings.AXES_ENABLED = True
    staff_user_factory("carol", superuser=True)
    statuses = [
        client.post(
            "/admin/login/?next=/admin/", {"username": "carol", "password": "wrong"}
        ).status_code
        for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]  # the form again, then locked
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "carol", "password": STAFF_PASSWORD}
    )
    assert response.status_code == 429
    assert not client.get("/admin/").wsgi_request.user.is_authenticated


@pytest.mark.django_db
def test_a_correct_login_still_works_below_the_limit(settings, staff_user_factory, client):
    settings.AXES_ENABLED = True
    staff_user_factory("dave", superuser=True)
    client.post("/admin/login/?next=/admin/", {"username": "dave", "password": "wrong"})
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "dave", "password": STAFF_PASSWORD}
    )
    assert response.status_code == 302
