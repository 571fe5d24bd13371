// Swagger UI for /docs: the description from /openapi.json, and "Try it out" requests
// carry the session's CSRF token, as every state change must.
(async function () {
  let csrf = null;
  try { csrf = (await (await fetch("/api/session")).json()).csrf_token; } catch (e) { /* logged out */ }
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapi, dom_id: "#swagger-ui", deepLinking: true,
    requestInterceptor: (request) => {
      if (csrf) request.headers["X-CSRF-Token"] = csrf;
      return request;
    },
  });
})();
