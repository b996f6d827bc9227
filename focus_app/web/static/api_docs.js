// Swagger UI on the project's own OpenAPI document: served from this origin, no inline script
// (the page's Content-Security-Policy allows none), no CDN, no call to the public validator.
'use strict';
(function () {
  const root = document.getElementById('swagger-ui');
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
  });
})();
