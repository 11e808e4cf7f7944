// Page behaviours, all from data attributes so templates carry no inline script or handler
// (a Content-Security-Policy without 'unsafe-inline' holds). Every page works without this
// file: forms post, links navigate; this adds confirmations, selection, and the photo viewer
// (fit to screen, zoom, full screen, keyboard and swipe navigation, drawing a face by hand).
(function () {
  "use strict";

  // Confirmations: <form data-confirm="..."> or <button data-confirm="...">. -------------------
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    var text = (button && button.dataset.confirm) || form.dataset.confirm;
    if (text && !window.confirm(text)) event.preventDefault();
  }, true);

  // "Select all" boxes: data-select-all="<input name>" [data-select-form="<form id>"]. --------
  function boxesFor(master) {
    var name = master.dataset.selectAll;
    var formId = master.dataset.selectForm;
    var scope = formId ? document : master.closest("form") || document;
    var selector = "input[type=checkbox][name='" + name + "']" + (formId ? "[form='" + formId + "']" : "");
    var boxes = Array.prototype.slice.call(scope.querySelectorAll(selector));
    if (formId) {
      var form = document.getElementById(formId);
      if (form) boxes = boxes.concat(Array.prototype.slice.call(form.querySelectorAll("input[type=checkbox][name='" + name + "']")));
    }
    return boxes;
  }

  function updateCount(form) {
    var out = form && form.querySelector("[data-selected-count]");
    if (!out) return;
    var n = form.querySelectorAll("input.thumb-pick:checked").length;
    out.textContent = n ? n + " selected" : "";
    form.classList.toggle("has-selection", n > 0);
  }

  // "Select photos": the boxes show on every photo, and a click on a photo selects it instead of
  // opening it; pressed again, the selection is cleared.
  function setSelecting(form, on) {
    var toggle = form.querySelector("[data-select-toggle]");
    form.classList.toggle("selecting", on);
    if (toggle) {
      toggle.setAttribute("aria-pressed", on ? "true" : "false");
      toggle.textContent = on ? "Cancel selection" : "Select photos";
    }
    if (!on) form.querySelectorAll("input[type=checkbox]").forEach(function (box) { box.checked = false; });
    updateCount(form);
  }

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest && event.target.closest("[data-select-toggle]");
    var form;
    if (toggle) {
      form = toggle.closest("[data-select-form]");
      if (form) setSelecting(form, !form.classList.contains("selecting"));
      return;
    }
    var link = event.target.closest && event.target.closest(".selecting .thumb a");
    if (link) {
      event.preventDefault();
      var box = link.parentElement.querySelector("input.thumb-pick");
      if (box) {
        box.checked = !box.checked;
        box.dispatchEvent(new Event("change", { bubbles: true }));
      }
    }
  });

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input.matches && input.matches("input[data-select-all]")) {
      boxesFor(input).forEach(function (box) { box.checked = input.checked; });
    }
    var form = input.closest && input.closest("[data-select-form]");
    if (form) updateCount(form);
  });

  // The review queue's lightbox: <a data-lightbox href="image"> opens it in the page's dialog.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-lightbox]");
    var box = document.querySelector("[data-lightbox-dialog]");
    if (link && box && box.showModal) {
      event.preventDefault();
      box.querySelector("img").src = link.href;
      box.showModal();
      return;
    }
    if (event.target.matches && event.target.matches("[data-lightbox-dialog], [data-lightbox-dialog] *")) {
      box.close();
    }
  });

  // After htmx adds or changes a face card: the "no faces" line goes, the count follows. It
  // counts by data-state once the swap settles: a swapped card keeps its old class until then.
  document.addEventListener("htmx:afterSettle", function () {
    var none = document.getElementById("no-faces");
    if (none && document.querySelector("#face-list .face-card")) none.remove();
    var count = document.getElementById("face-count");
    if (count) count.textContent = document.querySelectorAll("#face-list .face-card:not([data-state='not-a-face'])").length;
  });

  // The photo viewer. ---------------------------------------------------------------------------
  var ZOOMS = [1, 1.5, 2, 3, 4];

  function typing(target) {
    return target && target.closest && target.closest("input, textarea, select, [contenteditable]");
  }

  function setupViewer(viewer) {
    var frame = viewer.querySelector("[data-viewer-frame]");
    var stage = viewer.querySelector(".photo-stage");
    if (!frame || !stage) return;
    var img = stage.querySelector("img");
    var ratio = (+stage.dataset.width || 0) / (+stage.dataset.height || 0);
    var zoom = 1;
    var drawing = false;
    var drawButton = viewer.querySelector("[data-draw]");
    var help = viewer.querySelector("[data-draw-help]");
    var status = document.getElementById("draw-status");
    var drawForm = document.querySelector("[data-draw-form]");
    viewer.classList.add("is-enhanced");

    function nav(which) {
      var link = document.querySelector("[data-nav='" + which + "']");
      if (link) window.location.href = link.href;
    }

    // Fit: as large as the frame's width and the screen's height allow, never wider than the
    // frame; the figure takes the image's exact size so the face boxes (in %) stay on the faces.
    function layout() {
      if (!ratio) {
        ratio = img.naturalWidth && img.naturalHeight ? img.naturalWidth / img.naturalHeight : 0;
        if (!ratio) return;
      }
      var full = document.fullscreenElement === frame;
      var top = frame.getBoundingClientRect().top + window.scrollY;  // below the bars
      var availW = frame.clientWidth;
      var availH = full ? window.innerHeight : Math.max(240, window.innerHeight - Math.min(top, 180) - 16);
      var w = Math.min(availW, availH * ratio);
      var h = w / ratio;
      stage.style.width = Math.round(w * zoom) + "px";
      stage.style.height = Math.round(h * zoom) + "px";
      frame.classList.toggle("is-zoomed", zoom > 1);
      if (zoom > 1 && stage.dataset.original && img.dataset.full !== "1") {
        img.dataset.full = "1";  // zoomed in: the original's detail instead of the preview
        img.src = stage.dataset.original;
      }
    }

    function setZoom(next, focus) {
      var before = zoom;
      zoom = Math.max(ZOOMS[0], Math.min(ZOOMS[ZOOMS.length - 1], next));
      var fx = focus ? focus.x : frame.clientWidth / 2;
      var fy = focus ? focus.y : frame.clientHeight / 2;
      var sx = (frame.scrollLeft + fx) / before;
      var sy = (frame.scrollTop + fy) / before;
      layout();
      frame.scrollLeft = sx * zoom - fx;
      frame.scrollTop = sy * zoom - fy;
    }

    function step(dir) {
      var i = ZOOMS.indexOf(zoom);
      if (i < 0) i = 0;
      setZoom(ZOOMS[Math.max(0, Math.min(ZOOMS.length - 1, i + dir))]);
    }

    viewer.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (!button) return;
      if (button.dataset.zoom === "in") step(1);
      else if (button.dataset.zoom === "out") step(-1);
      else if (button.hasAttribute("data-fullscreen")) toggleFullscreen();
      else if (button.hasAttribute("data-draw")) setDrawing(!drawing);
    });

    function toggleFullscreen() {
      if (document.fullscreenElement) document.exitFullscreen();
      else if (frame.requestFullscreen) frame.requestFullscreen();
    }

    frame.addEventListener("dblclick", function (event) {
      if (drawing) return;
      var rect = frame.getBoundingClientRect();
      setZoom(zoom > 1 ? 1 : 2, { x: event.clientX - rect.left, y: event.clientY - rect.top });
    });

    img.addEventListener("load", layout);
    window.addEventListener("resize", layout);
    document.addEventListener("fullscreenchange", layout);
    layout();

    document.addEventListener("keydown", function (event) {
      if (typing(event.target) || event.altKey || event.ctrlKey || event.metaKey) return;
      if (event.key === "ArrowLeft" && zoom === 1 && !drawing) nav("prev");
      else if (event.key === "ArrowRight" && zoom === 1 && !drawing) nav("next");
      else if (event.key === "+" || event.key === "=") step(1);
      else if (event.key === "-") step(-1);
      else if (event.key === "f" || event.key === "F") toggleFullscreen();
      else if (event.key === "Escape") {
        if (drawing) setDrawing(false);
        else if (zoom > 1) setZoom(1);
        else if (!document.fullscreenElement) nav("up");
        else return;
      } else return;
      event.preventDefault();
    });

    // Swipe left / right (touch or pen) at the fitted size goes to the next / previous photo.
    var swipe = null;
    frame.addEventListener("pointerdown", function (event) {
      if (drawing || zoom > 1 || event.pointerType === "mouse") return;
      swipe = { x: event.clientX, y: event.clientY, t: Date.now() };
    });
    frame.addEventListener("pointerup", function (event) {
      if (!swipe) return;
      var dx = event.clientX - swipe.x;
      var dy = event.clientY - swipe.y;
      var quick = Date.now() - swipe.t < 800;
      swipe = null;
      if (quick && Math.abs(dx) > 60 && Math.abs(dx) > 2 * Math.abs(dy)) nav(dx < 0 ? "next" : "prev");
    });
    frame.addEventListener("pointercancel", function () { swipe = null; });

    // Drawing a face by hand: drag a box (mouse, pen or finger); it is posted in pixels of the
    // original photo, and the answer (the new face's card and box) is swapped in by htmx.
    var box = null;
    var start = null;

    function setDrawing(on) {
      drawing = on && !!drawForm;
      viewer.classList.toggle("is-drawing", drawing);
      if (drawButton) {
        drawButton.setAttribute("aria-pressed", drawing ? "true" : "false");
        drawButton.textContent = drawing ? "Stop drawing" : "Draw a face";
      }
      if (help) help.hidden = !drawing;
      if (!drawing && box && !box.dataset.sent) { box.remove(); box = null; }
    }

    function point(event) {
      var rect = stage.getBoundingClientRect();
      return {
        x: Math.max(0, Math.min(1, (event.clientX - rect.left) / rect.width)),
        y: Math.max(0, Math.min(1, (event.clientY - rect.top) / rect.height)),
      };
    }

    function place(a, b) {
      box.style.left = 100 * Math.min(a.x, b.x) + "%";
      box.style.top = 100 * Math.min(a.y, b.y) + "%";
      box.style.width = 100 * Math.abs(a.x - b.x) + "%";
      box.style.height = 100 * Math.abs(a.y - b.y) + "%";
    }

    stage.addEventListener("pointerdown", function (event) {
      if (!drawing) return;
      event.preventDefault();
      stage.setPointerCapture(event.pointerId);
      start = point(event);
      if (box) box.remove();
      box = document.createElement("span");
      box.className = "facebox draw-box";
      stage.appendChild(box);
      place(start, start);
    });
    stage.addEventListener("pointermove", function (event) {
      if (drawing && start && box) place(start, point(event));
    });
    stage.addEventListener("pointerup", function (event) {
      if (!drawing || !start || !box) return;
      var end = point(event);
      var a = start;
      start = null;
      var rect = stage.getBoundingClientRect();
      if (Math.abs(end.x - a.x) * rect.width < 8 || Math.abs(end.y - a.y) * rect.height < 8) {
        box.remove();
        box = null;
        return;  // a click, not a box
      }
      var W = +stage.dataset.width;
      var H = +stage.dataset.height;
      var values = {
        left: Math.round(Math.min(a.x, end.x) * W),
        top: Math.round(Math.min(a.y, end.y) * H),
        width: Math.round(Math.abs(end.x - a.x) * W),
        height: Math.round(Math.abs(end.y - a.y) * H),
      };
      Object.keys(values).forEach(function (key) { drawForm.elements[key].value = values[key]; });
      box.dataset.sent = "1";
      if (status) status.textContent = "Looking at the face…";
      drawForm.requestSubmit();
    });

    if (drawForm) {
      drawForm.addEventListener("htmx:afterRequest", function (event) {
        if (box) { box.remove(); box = null; }
        if (event.detail.xhr && event.detail.xhr.status === 200 && status) status.textContent = "";
        setDrawing(false);
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-viewer]").forEach(setupViewer);
    document.querySelectorAll("[data-select-form]").forEach(updateCount);
  });
})();
