"""The experiments' routes (admin keys only), and their dashboard page.

``GET  /v1/experiments``                   every experiment, briefly: ``{"object": "list", "data": [...]}``
``POST /v1/experiments``                   create one: a JSON object with ``name`` and the keys of an
                                           ``[experiments.NAME]`` table (201)
``GET  /v1/experiments/NAME``              its results (fareway.experiments.results), with the
                                           interval-over-time ``series``
``POST /v1/experiments/NAME/pause``        stop judging and send every caller to the control
``POST /v1/experiments/NAME/resume``       back to running
``POST /v1/experiments/NAME/stop``         end it (callers stay on the control; final)
``POST /v1/experiments/NAME/promote``      point the model name at the winner (body, optional:
                                           ``{"to": "control" | "challenger"}`` to choose without a
                                           decision); persisted, it survives restarts
``GET  /ui/experiments``                   the dashboard page (the interval over time), and its data
                                           ``GET /ui/api/experiments``, ``GET /ui/api/experiments/NAME``
                                           (session cookie, as the rest of /ui)

Errors are in the OpenAI error shape: 404 for an unknown experiment, 409 for an action its state
does not allow (resuming a stopped one, promoting without a decision), 400 for a bad body.
"""

from __future__ import annotations

import orjson

from fareway.dashboard import experiments_page
from fareway.dashboard.sessions import Sessions, read_cookie
from fareway.errors import AuthenticationFailed, BadRequest, NotFound
from fareway.experiments.manager import ExperimentManager
from fareway.pipeline.gateway import Gateway, Reply
from fareway.server.app import App, Request, json_reply

PREFIX = "/v1/experiments/"
UI_PREFIX = "/ui/api/experiments/"
ACTIONS = ("pause", "resume", "stop", "promote")
_NO_STORE = [("cache-control", "no-store")]


def _body(req: Request) -> dict[str, object]:
    if not req.body.strip():
        return {}
    try:
        data = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.")
    return data


def add_experiment_routes(
    app: App, gateway: Gateway, manager: ExperimentManager, sessions: Sessions | None = None
) -> None:
    async def listing(req: Request) -> Reply:
        return json_reply({"object": "list", "data": await manager.list()}, headers=list(_NO_STORE))

    async def create(req: Request) -> Reply:
        return json_reply(await manager.create(_body(req)), 201)

    async def one(req: Request) -> Reply:
        name = req.path[len(PREFIX) :]
        if not name or "/" in name:
            raise NotFound(f"Unknown route: {req.method} {req.path}", code="unknown_url")
        return json_reply(await manager.summary(name), headers=list(_NO_STORE))

    async def action(req: Request) -> Reply:
        name, _, verb = req.path[len(PREFIX) :].partition("/")
        if not name or verb not in ACTIONS:
            raise NotFound(
                f"Unknown route: {req.method} {req.path} (POST /v1/experiments/NAME/{{{','.join(ACTIONS)}}})",
                code="unknown_url",
            )
        body = _body(req)
        to = body.get("to")
        if verb != "promote" and body:
            raise BadRequest(f"`{verb}` takes no body.")
        if set(body) - {"to"}:
            raise BadRequest("`promote` takes only `to`.", param="to")
        if to is not None and not isinstance(to, str):
            raise BadRequest("`to` must be control or challenger.", param="to")
        return json_reply(await manager.set_status(name, verb, to))

    app.add("GET", "/v1/experiments", listing, auth="admin")
    app.add("POST", "/v1/experiments", create, auth="admin", body=True)
    app.add("GET", PREFIX, one, auth="admin", prefix=True)
    app.add("POST", PREFIX, action, auth="admin", body=True, prefix=True)

    if sessions is None:
        return
    store = sessions

    async def signed_in(req: Request) -> bool:
        s = await store.get(read_cookie(req.headers.get("cookie")))
        if s is None:
            return False
        try:
            principal = await gateway.keys.authenticate_digest(s.digest)
        except AuthenticationFailed:
            await store.drop(s.sid)
            return False
        if not principal.is_admin:
            await store.drop(s.sid)
            return False
        return True

    async def page(req: Request) -> Reply:
        if not await signed_in(req):
            return Reply(
                303, [("location", "/ui"), ("cache-control", "no-store")], b"", content_type="text/plain"
            )
        return Reply(
            200,
            list(experiments_page.SECURITY_HEADERS),
            experiments_page.page(),
            content_type=experiments_page.HTML,
        )

    async def ui_list(req: Request) -> Reply:
        if not await signed_in(req):
            raise AuthenticationFailed("Not signed in to the dashboard (or the session expired).")
        return await listing(req)

    async def ui_one(req: Request) -> Reply:
        if not await signed_in(req):
            raise AuthenticationFailed("Not signed in to the dashboard (or the session expired).")
        name = req.path[len(UI_PREFIX) :]
        if not name or "/" in name:
            raise NotFound(f"Unknown route: {req.method} {req.path}", code="unknown_url")
        return json_reply(await manager.summary(name), headers=list(_NO_STORE))

    app.add("GET", "/ui/experiments", page, auth="none")
    app.add("GET", "/ui/api/experiments", ui_list, auth="none")
    app.add("GET", UI_PREFIX, ui_one, auth="none", prefix=True)
