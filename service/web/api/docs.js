// Starts Swagger UI on the page's #swagger element with the document named by data-spec.
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger");
  window.SwaggerUIBundle({ url: root.dataset.spec, domNode: root, deepLinking: false });
});
