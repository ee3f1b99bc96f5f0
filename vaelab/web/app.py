"""The explorer's FastAPI app: ``create_app(run_dir)`` -> an ASGI app serving one page and a JSON API.

Security model: it serves one run read-only. No endpoint takes a path; the page and its assets (ASSETS) are
read once from this package's ``static/`` folder; the only files opened are the run's own
(config.json, model.safetensors, eval.json, metrics.jsonl) and the test split of its dataset.
Every bad request gets a 4xx ``{"error": "..."}`` naming the bad value and what is allowed.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .explorer import Explorer
from .schemas import SCHEMAS, DecodeRequest, EncodeRequest, InterpolateRequest, LikelihoodRequest, SampleRequest

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          **{f"/static/{name}": (name, "text/javascript; charset=utf-8")
             for name in ("common.js", "map.js", "draw.js", "app.js")},
          "/static/style.css": ("style.css", "text/css; charset=utf-8")}
CSP = "default-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'"


class ApiError(Exception):
    """A request that is well formed but not valid for this model (status 422 unless given)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` (413) before anything parses them."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        too_large = _error(f"request body is larger than allowed: at most {self.max_bytes} bytes", 413)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await too_large(scope, receive, send)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # client went away
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.max_bytes:
                return await too_large(scope, receive, send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _host_name(value: str) -> str:
    """'localhost:8000' -> 'localhost', '[::1]:8000' -> '::1', 'Example.COM.' -> 'example.com'."""
    value = value.strip().lower()
    if value.startswith("["):  # [v6]:port
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


class HostOriginCheck:
    """ASGI middleware against DNS rebinding and cross-site requests: the Host header must name an allowed
    host (loopback by default, any port), and a request carrying an Origin of another host is refused (403)
    on the API and on every state-changing method."""

    def __init__(self, app: Any, allowed_hosts: list[str] | tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed = {_host_name(h) for h in (*LOOPBACK_HOSTS, *allowed_hosts) if h}
        self.any_host = "*" in allowed_hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = _host_name(headers.get(b"host", b"").decode("latin-1"))
        allowed = self.any_host or host in self.allowed
        if not allowed:
            shown = host or "(none)"
            return await _error(f"Host {shown!r} is not allowed; allowed: {sorted(self.allowed)} "
                                "(vaelab serve --host H allows H)", 403)(scope, receive, send)
        origin = headers.get(b"origin")
        guarded = scope["method"] not in SAFE_METHODS or scope["path"].startswith("/api/")
        if origin is not None and guarded:
            text = origin.decode("latin-1").strip()
            netloc = text.split("://", 1)[1] if "://" in text else ""
            if not netloc or _host_name(netloc) != host:
                return await _error(f"cross-origin request from {text[:80]!r} refused: the explorer only "
                                    "answers its own page", 403)(scope, receive, send)
        return await self.app(scope, receive, send)


def _loc(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "body"]
    text = ""
    for p in parts:
        text += f"[{p}]" if p.isdigit() else (f".{p}" if text else p)
    return text or "body"


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validation_message(path: str, errors: list[dict[str, Any]]) -> str:
    """Pydantic errors -> one line per error naming the field, the bad value and the rule."""
    schema = SCHEMAS.get(path)
    fields = sorted(schema.model_fields) if schema else []
    lines = []
    for e in errors[:5]:
        kind, where = e.get("type", ""), _loc(tuple(e.get("loc", ())))
        if kind == "json_invalid":
            lines.append(f"request body is not valid JSON ({e.get('ctx', {}).get('error', e.get('msg'))})")
        elif kind == "missing":
            lines.append(f"{where} is required" + (f"; fields: {fields}" if fields else ""))
        elif kind == "extra_forbidden":
            lines.append(f"unknown field {where!r}; allowed fields: {fields}")
        elif kind == "value_error":
            lines.append(str(e.get("msg", "")).removeprefix("Value error, "))
        elif kind == "model_attributes_type":
            lines.append(f"the body must be a JSON object with fields {fields}; got {_show(e.get('input'))}")
        else:
            lines.append(f"{where}={_show(e.get('input'))} is not allowed: {e.get('msg')}")
    more = len(errors) - 5
    return "; ".join(lines) + (f" (and {more} more error(s))" if more > 0 else "")


def create_app(run_dir: str | Path, data_dir: str | Path | None = None, max_points: int = 5000,
               max_body: int | None = None, explorer: Explorer | None = None, data: str | Path | None = None,
               allowed_hosts: list[str] | tuple[str, ...] = ()) -> FastAPI:
    """Load the run, encode its test set (at most ``max_points`` images) and return the ASGI app.

    ``data`` overrides the dataset recorded in config.json (recorded paths are confined, see
    ``vaelab.data.resolve_recorded``); ``allowed_hosts`` adds Host header names to the loopback ones
    ("*": any)."""
    ex = explorer or Explorer(run_dir, data_dir=data_dir, max_points=max_points, data=data)
    limit = max_body or max(65536, 32 * ex.pixel_count + 4096)
    assets = {route: ((STATIC / name).read_bytes(), kind) for route, (name, kind) in ASSETS.items()}
    info = ex.info()
    app = FastAPI(title=f"vaelab explorer: {ex.name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.explorer = ex
    app.add_middleware(BodyLimit, max_bytes=limit)
    app.add_middleware(HostOriginCheck, allowed_hosts=tuple(allowed_hosts))  # added last: runs first

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(validation_message(request.url.path, list(exc.errors())), 422)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.message, exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        allowed = "GET /, GET /api/info, POST /api/{decode,encode,likelihood,sample,interpolate}"
        return _error(f"{request.method} {request.url.path}: {exc.detail}; available: {allowed}", exc.status_code)

    def page(route: str) -> Response:
        content, kind = assets[route]
        return Response(content, media_type=kind, headers={"Content-Security-Policy": CSP,
                                                            "X-Content-Type-Options": "nosniff"})

    def endpoint(route: str) -> Any:
        def serve_asset() -> Response:  # no parameters: nothing from the request picks a file
            return page(route)
        return serve_asset

    for route in assets:
        app.add_api_route(route, endpoint(route), methods=["GET"], include_in_schema=False)

    def check_y(y: int | None, required: bool) -> None:
        if not ex.n_classes:
            if y is not None:
                raise ApiError(f"y={y} was given but model {ex.name!r} is not conditional; omit y")
            return
        allowed = f"0..{ex.n_classes - 1} ({', '.join(ex.class_names[:ex.n_classes])})"
        if y is None and required:
            raise ApiError(f"model {ex.name!r} is conditional: pass the class y; allowed: {allowed}")
        if y is not None and y >= ex.n_classes:
            raise ApiError(f"y={y} is not a class of this model; allowed: {allowed}")

    def check_pixels(x: list[float]) -> None:
        if len(x) != ex.pixel_count:
            raise ApiError(f"x has {len(x)} values; this model takes {ex.pixel_count} "
                           f"(flat pixels of shape {list(ex.model.input_shape)})")

    def check_index(name: str, index: int) -> None:
        if index >= ex.n_points:
            raise ApiError(f"{name}={index} is out of range; allowed: 0..{ex.n_points - 1} "
                           f"(the first {ex.n_points} test images)")

    @app.get("/api/info")
    def api_info() -> dict[str, Any]:
        return info

    @app.post("/api/decode")
    def api_decode(req: DecodeRequest) -> dict[str, Any]:
        if len(req.z) != ex.latent_dim:
            raise ApiError(f"z has {len(req.z)} values; this model's latent_dim is {ex.latent_dim}: "
                           f"send exactly {ex.latent_dim} finite numbers in [-1000, 1000]")
        check_y(req.y, required=True)
        out = ex.decode([req.z], req.y)[0]
        return {**out, "shape": list(ex.model.input_shape), "map": ex.to_map([req.z])[0].tolist()}

    @app.post("/api/encode")
    def api_encode(req: EncodeRequest) -> dict[str, Any]:
        if req.index is not None:
            if req.y is not None:
                raise ApiError("y goes with x only: a test image (index) is encoded with its own label")
            check_index("index", req.index)
            return ex.encode_index(req.index)
        assert req.x is not None
        check_pixels(req.x)
        check_y(req.y, required=True)
        return ex.encode_pixels(req.x, req.y)

    @app.post("/api/likelihood")
    def api_likelihood(req: LikelihoodRequest) -> dict[str, Any]:
        check_pixels(req.x)
        check_y(req.y, required=True)
        if not ex.model.capabilities.likelihood:
            raise ApiError(f"model {ex.name!r} has no likelihood p(x) (an autoencoder): log p(x) is not defined")
        try:
            return ex.log_likelihood(req.x, req.y, req.k, req.seed)
        except ValueError as e:  # e.g. pixels outside [0, 1] under a Bernoulli likelihood
            raise ApiError(str(e)) from None

    @app.post("/api/sample")
    def api_sample(req: SampleRequest) -> dict[str, Any]:
        check_y(req.y, required=False)
        return {"images": ex.sample(req.n, req.temperature, req.y), "shape": list(ex.model.input_shape)}

    @app.post("/api/interpolate")
    def api_interpolate(req: InterpolateRequest) -> dict[str, Any]:
        check_index("i", req.i)
        check_index("j", req.j)
        check_y(req.y, required=False)
        images, points = ex.interpolate(req.i, req.j, req.steps, req.method, req.y)
        return {"images": images, "map": points.round(4).tolist(), "shape": list(ex.model.input_shape),
                "ends": ex.render(ex.x[[req.i, req.j]])}  # the two test images themselves

    return app
