// Live updates for the pages: the message of the day (ui.banner) and the lab name follow the
// settings channel. The socket is opened with a single-use ticket, so the session cookie never
// has to authenticate a WebSocket from script.
(function () {
  "use strict";
  var base = document.body.dataset.baseUrl || "/";

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  function show(id, text) {
    var element = document.getElementById(id);
    if (!element) return;
    element.textContent = text || "";
    element.hidden = !text;
  }

  function connect(attempt) {
    fetch(base + "api/v1/auth/ws-ticket", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-XSRFToken": cookie("_xsrf") },
    })
      .then(function (reply) {
        if (!reply.ok) throw new Error("ticket refused: " + reply.status);
        return reply.json();
      })
      .then(function (body) {
        var scheme = location.protocol === "https:" ? "wss://" : "ws://";
        var socket = new WebSocket(scheme + location.host + base + "api/v1/ws?ticket=" + encodeURIComponent(body.ticket));
        socket.onopen = function () {
          attempt = 0;
          socket.send(JSON.stringify({ action: "subscribe", channels: ["settings"] }));
        };
        socket.onmessage = function (message) {
          var data = JSON.parse(message.data);
          if (data.event_type !== "setting.updated") return;
          var p = data.payload;
          if (p.namespace === "ui" && p.key === "banner") show("banner", p.value);
          if (p.namespace === "ui" && p.key === "lab_name") show("lab-name", p.value);
        };
        socket.onclose = function (event) {
          if (event.code === 4001) { location.href = base + "login"; return; }
          if (event.code !== 1000) setTimeout(function () { connect(attempt + 1); }, Math.min(30000, 1000 * Math.pow(2, attempt)));
        };
      })
      .catch(function () {
        setTimeout(function () { connect(attempt + 1); }, Math.min(30000, 1000 * Math.pow(2, attempt)));
      });
  }

  connect(0);
})();
