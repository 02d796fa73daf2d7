// Operations Hub page: its filters live in the URL's query string, so a view can be
// bookmarked and a reload keeps it. Loaded before hub.js, which reads the selects.
(function () {
  "use strict";

  var filters = { include: "hub-type", status: "hub-status" };
  var params = new URLSearchParams(window.location.search);

  Object.keys(filters).forEach(function (name) {
    var select = document.getElementById(filters[name]);
    if (!select) { return; }
    var wanted = params.get(name);
    if (wanted && Array.prototype.some.call(select.options, function (o) { return o.value === wanted; })) {
      select.value = wanted;
    }
    select.addEventListener("change", function () {
      var next = new URLSearchParams(window.location.search);
      if (select.value) { next.set(name, select.value); } else { next.delete(name); }
      var search = next.toString();
      window.history.replaceState(null, "", window.location.pathname + (search ? "?" + search : ""));
    });
  });
})();
