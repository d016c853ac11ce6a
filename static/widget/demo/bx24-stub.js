// Demo stand-in for what BX24.js gives a placement frame: init(cb) once the frame is ready, fitWindow()
// that the real parent answers by resizing the iframe (here the host page does it), placement.info().
(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var calls = (window.__bx24Calls = []);
  window.BX24 = {
    init: function (callback) { calls.push('init'); setTimeout(callback, 0); },
    fitWindow: function (callback) {
      calls.push('fitWindow');
      var height = document.documentElement.scrollHeight;
      if (window.parent !== window) { window.parent.postMessage({ bx24: 'fitWindow', height: height }, '*'); }
      if (callback) { callback(); }
    },
    resizeWindow: function (width, height, callback) { calls.push('resizeWindow'); if (callback) { callback(); } },
    placement: {
      info: function () {
        return { placement: 'CRM_DEAL_DETAIL_TAB', options: { ID: params.get('deal') || '' } };
      }
    },
    getAuth: function () { return false; }
  };
})();
