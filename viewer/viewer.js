/* mod_jpip viewer: OpenSeadragon over the IIIF endpoint, ROI overlays,
 * the side panel. Served with the module; no inline script anywhere (the
 * page's Content-Security-Policy allows only these files). */
(function () {
  "use strict";

  var panelToggle = document.getElementById("jpip-panel-toggle");
  var panel = document.getElementById("jpip-panel");
  if (panelToggle && panel) {
    panelToggle.addEventListener("click", function () {
      var open = !document.body.classList.contains("jpip-panel-open");
      document.body.classList.toggle("jpip-panel-open", open);
      panelToggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  var copy = document.getElementById("jpip-copy");
  var url = document.getElementById("jpip-url");
  if (copy && url) {
    copy.addEventListener("click", function () {
      var done = function () {
        copy.textContent = "Copied";
        window.setTimeout(function () { copy.textContent = "Copy"; }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(url.value).then(done, function () {});
      } else {
        url.focus();
        url.select();
        try {
          if (document.execCommand("copy")) {
            done();
          }
        } catch (e) {
          /* the text stays selected for the user to copy */
        }
      }
    });
  }

  var el = document.getElementById("jpip-osd");
  if (!el || !el.dataset.info || typeof window.OpenSeadragon !== "function") {
    return;
  }
  var OSD = window.OpenSeadragon;
  /* OpenSeadragon adds an inline <style> (its focus rule for touch
   * screens, which viewer.css carries) unless one is there: an empty one
   * marks it as present, so the page needs no 'unsafe-inline' */
  if (!document.querySelector("style[data-openseadragon-mobile-css]")) {
    var mark = document.createElement("style");
    mark.setAttribute("data-openseadragon-mobile-css", "true");
    document.head.appendChild(mark);
  }
  var viewer = OSD({
    element: el,
    prefixUrl: el.dataset.prefix,
    tileSources: el.dataset.info,
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    showRotationControl: false,
    showFullPageControl: true,
    maxZoomPixelRatio: 4,
    visibilityRatio: 0.5,
    crossOriginPolicy: false,
    gestureSettingsTouch: { pinchRotate: false },
    keyboardNavEnabled: true,
    /* the IIIF endpoint renders a few tiles at a time per process
     * (JPIPIIIFMaxRenders); ask for no more, and again if it was busy */
    imageLoaderLimit: 4,
    tileRetryMax: 3,
    tileRetryDelay: 400
  });
  /* for scripted use (and the tests): window.jpipViewer is the viewer */
  window.jpipViewer = viewer;

  var rois = [];
  var links = document.querySelectorAll("button.jpip-roi-link");
  Array.prototype.forEach.call(links, function (b) {
    rois.push({
      name: b.dataset.name,
      x: Number(b.dataset.x), y: Number(b.dataset.y),
      w: Number(b.dataset.w), h: Number(b.dataset.h),
      link: b
    });
  });

  function rectOf(roi) {
    var item = viewer.world.getItemAt(0);
    return item.imageToViewportRectangle(roi.x, roi.y, roi.w, roi.h);
  }

  function zoomTo(roi) {
    viewer.viewport.fitBoundsWithConstraints(rectOf(roi));
  }

  viewer.addHandler("open", function () {
    rois.forEach(function (roi, i) {
      var box = document.createElement("div");
      box.className = "jpip-roi";
      box.id = "jpip-roi-" + i;
      var label = document.createElement("span");
      label.className = "jpip-roi-label";
      label.textContent = roi.name;
      box.appendChild(label);
      box.title = roi.name;
      viewer.addOverlay({ element: box, location: rectOf(roi) });
      /* OpenSeadragon takes the pointer events of its canvas: a tracker
       * of the overlay's own sees the click */
      new OSD.MouseTracker({
        element: box,
        clickHandler: function (ev) {
          if (ev.quick) {
            zoomTo(roi);
          }
        }
      });
      roi.link.addEventListener("click", function () { zoomTo(roi); });
    });
    document.body.classList.add("jpip-open");
  });
  viewer.addHandler("open-failed", function () {
    /* OpenSeadragon shows the reason in the viewer */
    el.classList.add("jpip-failed");
  });
})();
