// Progressive enhancement for the upload form: drag-and-drop and upload-on-choose with a
// progress line. Without this script the plain multipart form still works. The page behaviours
// (confirmations, selection, the photo viewer) are in pages.js.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function csrfToken(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function send(form, files) {
    var status = form.querySelector("[data-upload-status]");
    var target = document.querySelector(form.dataset.uploadTarget || "#batches");
    if (!files.length) return;
    var data = new FormData();
    for (var i = 0; i < files.length; i++) data.append("files", files[i], files[i].name);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("HX-Request", "true");
    xhr.setRequestHeader("X-CSRFToken", csrfToken(form));
    form.classList.add("is-busy");
    status.textContent = "Uploading " + files.length + " file" + (files.length === 1 ? "" : "s") + "…";
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) {
        status.textContent = "Uploading " + files.length + " file" + (files.length === 1 ? "" : "s") +
          "… " + Math.round((100 * event.loaded) / event.total) + "%";
      }
    });
    xhr.addEventListener("load", function () {
      form.classList.remove("is-busy");
      if (xhr.status === 200 || xhr.status === 422) {
        status.textContent = "";
        var holder = document.createElement("div");
        holder.innerHTML = xhr.responseText;
        var panel = holder.firstElementChild;
        if (panel && target) {
          target.prepend(panel);
          if (window.htmx) window.htmx.process(panel);  // starts the panel's polling
        }
        // The new photos appear in the grid at once (as "queued"), then as they finish.
        document.body.dispatchEvent(new CustomEvent("photos-changed"));
      } else if (xhr.status === 413) {
        status.textContent = "The upload is too large for the server; send fewer files at once.";
      } else {
        status.textContent = "The upload failed (HTTP " + xhr.status + "). Try again.";
      }
      form.reset();
    });
    xhr.addEventListener("error", function () {
      form.classList.remove("is-busy");
      status.textContent = "The upload failed: the server could not be reached.";
    });
    xhr.send(data);
  }

  function enhance(form) {
    var input = form.querySelector("input[type=file]");
    input.addEventListener("change", function () { send(form, input.files); });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      send(form, input.files);
    });
    ["dragenter", "dragover"].forEach(function (name) {
      form.addEventListener(name, function (event) {
        event.preventDefault();
        form.classList.add("is-dragover");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      form.addEventListener(name, function (event) {
        event.preventDefault();
        form.classList.remove("is-dragover");
      });
    });
    form.addEventListener("drop", function (event) {
      if (event.dataTransfer && event.dataTransfer.files.length) send(form, event.dataTransfer.files);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-upload]").forEach(enhance);
  });
})();
