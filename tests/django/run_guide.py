"""Runs the code of docs/django.md against a live informd, so the guide cannot rot.

Every ```python block of the guide starts with a comment naming its file
(`# notifications/views.py`); the one ```html block is the template snippet
(templates/informd/bell.html). They are written into a temporary Django project, nothing is
retyped here, and then used the way a site would: a logged-in user fetches a token, a comment
is saved inside a transaction, the page snippet is rendered.

Environment: INFORMD_URL, INFORMD_JWT_SECRET, INFORMD_PUBLISH_KEY (of the informd the Rust
test started), INFORMD_ESCALATION_SECRET (its escalation_secret) and DJANGO_PORT (where
informd's escalation_webhook points: this harness serves the project there). Exit code 0
means every check passed.
"""

import os
import pathlib
import re
import sys
import tempfile

import requests

REPO = pathlib.Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "django.md"
INFORMD_URL = os.environ["INFORMD_URL"]


def extract(project):
    """Writes the guide's blocks into `project`; returns the files written."""
    text = GUIDE.read_text()
    written = []
    html = []
    for lang, code in re.findall(r"^```(\w+)\n(.*?)^```", text, re.S | re.M):
        if lang == "python":
            first = code.splitlines()[0]
            assert first.startswith("# "), f"a python block without its file name: {first!r}"
            path = project / first[2:].split()[0]
        elif lang == "html":
            html.append(code)
            path = project / "templates" / "informd" / "bell.html"
        else:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        for package in path.relative_to(project).parents:
            if str(package) not in (".", "templates") and not str(package).startswith("templates"):
                (project / package / "__init__.py").touch()
        path.write_text(code)
        written.append(str(path.relative_to(project)))
    assert len(html) == 1, f"expected one html block, found {len(html)}"
    return written


def configure(project):
    sys.path.insert(0, str(project))
    (project / "harness_urls.py").write_text(
        "from django.urls import include, path\n"
        "urlpatterns = [path('', include('notifications.urls'))]\n"
    )
    import django
    from django.conf import settings

    import mysite.informd_settings as informd_settings

    settings.configure(
        DEBUG=True,
        SECRET_KEY="guide-test",
        ALLOWED_HOSTS=["testserver", "127.0.0.1"],
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "blog",
            "notifications.apps.NotificationsConfig",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(project / "db.sqlite3")}
        },
        ROOT_URLCONF="harness_urls",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [str(project / "templates")],
                "OPTIONS": {
                    "context_processors": [
                        "django.contrib.auth.context_processors.auth",
                        "notifications.context_processors.informd",
                    ]
                },
            }
        ],
        **{k: getattr(informd_settings, k) for k in dir(informd_settings) if k.startswith("INFORMD_")},
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


def unread(user):
    from notifications.tokens import informd_token

    answer = requests.get(
        f"{INFORMD_URL}/api/notifications/unread",
        headers={"Authorization": f"Bearer {informd_token(user)}"},
        timeout=5,
    )
    answer.raise_for_status()
    return answer.json()


def check_token_view(author):
    from django.test import Client

    client = Client()
    assert client.get("/notifications/token/").status_code == 302, "anonymous users get no token"
    client.force_login(author)
    answer = client.get("/notifications/token/")
    assert answer.status_code == 200
    assert "no-cache" in answer["Cache-Control"] or "max-age=0" in answer["Cache-Control"]
    token = answer.json()["token"]
    check = requests.get(
        f"{INFORMD_URL}/api/notifications/unread",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert check.status_code == 200, f"informd refused the view's token: {check.text}"
    print("token view: its token is accepted by informd")


def check_publish_after_commit(author, reader, article):
    from blog.models import Comment
    from django.db import transaction

    with transaction.atomic():
        comment = Comment.objects.create(article=article, author=reader, body="Great post!")
        assert unread(author)["unread"] == 0, "published before the commit"
    assert unread(author)["unread"] == 1, "not published after the commit"

    try:
        with transaction.atomic():
            Comment.objects.create(article=article, author=reader, body="rolled back")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert unread(author)["unread"] == 1, "a rolled-back comment was published"

    # The same comment's signal again (a retried job): the Idempotency-Key makes it a no-op.
    from notifications.signals import notify_article_author

    notify_article_author(Comment, instance=comment, created=True)
    assert unread(author)["unread"] == 1, "a retry notified twice"

    from notifications.tokens import informd_token

    items = requests.get(
        f"{INFORMD_URL}/api/notifications",
        headers={"Authorization": f"Bearer {informd_token(author)}"},
        timeout=5,
    ).json()["items"]
    assert len(items) == 1, items
    item = items[0]
    assert item["kind"] == "reply"
    assert item["actor"]["name"] == reader.get_username()
    assert item["subject"]["title"] == article.title
    assert item["data"]["excerpt"] == "Great post!"
    print("signal: published once, after the commit, never on rollback or retry")


def check_template(author):
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = author
    html = render_to_string("informd/bell.html", request=request)
    badge = unread(author)
    assert f'class="badge">{badge["unread"]}</span>' in html, html
    assert f'"seq": {badge["seq"]}' in html, html
    assert f'src="{INFORMD_URL}/static/informd.js"' in html
    assert "informd.connect(" in html and "since: boot.seq" in html
    assert '"/notifications/token/"' in html
    print("template: badge and seq rendered, informd.js started with since")
    out = os.environ.get("GUIDE_PAGE_OUT")
    if out:
        # The browser half of this test (tests/browser) opens it in Chromium.
        pathlib.Path(out).write_text(f"<!doctype html><meta charset=utf-8><body>{html}</body>")


def serve_django(port):
    """Serves the project on 127.0.0.1:`port`, where informd POSTs its escalations."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.wsgi import get_wsgi_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", port, get_wsgi_application(), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def check_escalation(author, reader, article):
    """informd escalates the author's unread reply (the author never connected) to the view."""
    import hashlib
    import hmac
    import json
    import time

    from django.core import mail
    from django.test import Client
    from notifications.tokens import informd_token

    item = requests.get(
        f"{INFORMD_URL}/api/notifications",
        headers={"Authorization": f"Bearer {informd_token(author)}"},
        timeout=5,
    ).json()["items"][0]
    body = json.dumps({"user": str(author.pk), "notification": item}).encode()
    key = f"informd-escalation-{item['id']}"
    client = Client()
    forged = client.post(
        "/notifications/escalate/",
        data=body,
        content_type="application/json",
        headers={"Idempotency-Key": key, "X-Informd-Signature": "sha256=" + "0" * 64},
    )
    assert forged.status_code == 403, forged.status_code

    deadline = time.monotonic() + 20
    while not getattr(mail, "outbox", []):
        assert time.monotonic() < deadline, "informd's escalation never reached the view"
        time.sleep(0.05)
    assert len(mail.outbox) == 1, [m.subject for m in mail.outbox]
    email = mail.outbox[0]
    assert email.to == [author.email], email.to
    assert email.subject == f"{reader.get_username()} replied to {article.title}", email.subject

    # informd retrying after it lost the answer: the same key is not emailed again.
    secret = os.environ["INFORMD_ESCALATION_SECRET"].encode()
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    repeat = client.post(
        "/notifications/escalate/",
        data=body,
        content_type="application/json",
        headers={"Idempotency-Key": key, "X-Informd-Signature": signature},
    )
    assert repeat.status_code == 200, repeat.status_code
    assert len(mail.outbox) == 1, "a repeated escalation was emailed twice"
    print("escalation: informd's signed POST verified, emailed once; forged one refused")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        project = pathlib.Path(tmp)
        print("guide files:", ", ".join(extract(project)))
        configure(project)
        serve_django(int(os.environ["DJANGO_PORT"]))
        from blog.models import Article
        from django.contrib.auth import get_user_model

        User = get_user_model()
        author = User.objects.create_user("ada", email="ada@example.com", password="x")
        reader = User.objects.create_user("grace", password="x")
        article = Article.objects.create(author=author, title="Hello informd")
        check_token_view(author)
        check_publish_after_commit(author, reader, article)
        check_template(author)
        check_escalation(author, reader, article)
    print("django guide: passed")


if __name__ == "__main__":
    main()
