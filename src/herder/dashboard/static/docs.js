// /docs: Swagger UI over the master's own OpenAPI document, from files the master serves (the
// page's Content-Security-Policy allows nothing else, hence this file and no inline script).
window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
});
