"""schemathesis hooks for scripts/e2e.sh (loaded through SCHEMATHESIS_HOOKS).

A new password (`format: password` in /openapi.json) must be 12 to 128 characters and not
guessable: zxcvbn must score it 3 or more, which no JSON Schema keyword can state. Left to the
schema alone, generated passwords such as "000000000000" would be refused with 422, as the
documentation says they are. So passwords are drawn here: 24 hex digits of a hash of a drawn
integer plus a fixed suffix, always unguessable and reproducible under the run's seed.
"""

import hashlib
import json
import os
import re
import urllib.request
import uuid

import schemathesis
from hypothesis import strategies as st


def _password(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()[:24] + "-Kq"


schemathesis.openapi.format("password", st.integers().map(_password))


# Who calls each operation. Every operation runs as the admin whose token scripts/e2e.sh passes
# in E2E_ADMIN_TOKEN, except:
# - routes that end the caller's session or check the caller's password (a run of wrong
#   passwords locks the account) run as a customer registered for that one request;
# - the developer's own routes run as a developer registered once (an admin has no developer
#   profile: every call would be refused with 403 and test nothing else);
# - revoking a user's sessions runs as a second admin, logged in afresh for each request, since
#   it may revoke its own sessions (scripts/e2e.sh runs it last, on its own).
OWN_SESSION = re.compile(
    r"^/api/auth/(v2/)?(logout|logout-all|change-password|sessions/\{id\}|mfa/enable|mfa/disable)$"
)
REVOKE = "/api/admin/users/{id}/revoke-sessions"
DEVELOPER = "/api/developer/me"
_developer_token = []


def _post(path: str, body: dict) -> dict:
    request = urllib.request.Request(
        os.environ["E2E_BASE_URL"] + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _register(role: str) -> str:
    email = f"e2e-{uuid.uuid4().hex}@example.test"
    body = {"email": email, "password": _password(uuid.uuid4().int), "first_name": "E2E", "role": role}
    return _post("/api/auth/register", body)["access_token"]


@schemathesis.auth(refresh_interval=None)
class Callers:
    def get(self, case, ctx):
        if OWN_SESSION.match(case.path):
            return _register("customer")
        if case.path == DEVELOPER:
            if not _developer_token:
                _developer_token.append(_register("developer"))
            return _developer_token[0]
        if case.path == REVOKE:
            answer = _post(
                "/api/auth/login",
                {
                    "email": os.environ["E2E_REVOKER_EMAIL"],
                    "password": os.environ["E2E_REVOKER_PASSWORD"],
                },
            )
            return answer["access_token"]
        return os.environ["E2E_ADMIN_TOKEN"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
