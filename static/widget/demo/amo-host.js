/*
 * Stand-in for an amoCRM deal card, used by the demo page (static/widget/demo/amocrm.html, API key of the
 * sandbox portal) and by the browser tests (tests/widget/amo_stub, a real amo widget JWT).
 * The parts of an amoCRM card page that static/widget/amocrm/script.js touches, and nothing more:
 *   - a jQuery subset: $('<div>').text(x).html(), $(selector).html(str), $(document).on/off with a
 *     namespace and a delegated selector, $.extend (shallow). Anything else throws, so a widget change
 *     that needs more of jQuery fails the test loudly instead of passing against a lenient fake;
 *   - an AMD `define`/`require` that hands the module 'jquery';
 *   - the widget host: APP.data.current_card, system(), i18n() from the built i18n/ru.json,
 *     render_template() and $authorizedAjax() (fetch with the X-Auth-Token the test minted, then-able
 *     with jQuery's (data, textStatus, jqXHR) / (jqXHR, textStatus, error) callbacks; type, headers,
 *     data + contentType, and dataType 'binary' with xhrFields.responseType 'blob' as jQuery 3 does).
 * The test passes window.__STUB_CONFIG = {token, dealId, userId, lang} through page.add_init_script.
 */
(function () {
  'use strict';

  var config = window.__STUB_CONFIG || {};
  if (!window.__STUB_CONFIG) {
    // The demo page passes ?deal=&lang= and #key= (the sandbox portal's API key stands in for amo's JWT).
    var query = new URLSearchParams(location.search);
    config = {
      apiKey: new URLSearchParams(location.hash.slice(1)).get('key') || sessionStorage.getItem('cb-demo-key') || '',
      dealId: query.get('deal') || null,
      lang: query.get('lang') === 'en' ? 'en' : 'ru',
      view: query.get('view') || '',
      userId: 0
    };
  }
  var errors = (window.__stubErrors = []);
  var ajaxLog = (window.__ajaxLog = []);
  var ajaxCalls = (window.__ajaxCalls = []);
  window.addEventListener('error', function (event) { errors.push('error: ' + event.message); });
  window.addEventListener('unhandledrejection', function (event) {
    var reason = event.reason;
    errors.push('unhandled rejection: ' + (reason && reason.stack ? reason.stack : JSON.stringify(reason)));
  });

  window.APP = {
    lang_id: config.lang || 'ru',
    data: { current_card: config.dealId == null ? null : { id: config.dealId } }
  };

  // --- jQuery subset -------------------------------------------------------------------------------
  var listeners = [];

  function Wrapped(nodes) {
    this.nodes = nodes;
    this.length = nodes.length;
  }

  Wrapped.prototype.text = function (value) {
    if (value === undefined) { return this.nodes.map(function (n) { return n.textContent; }).join(''); }
    this.nodes.forEach(function (n) { n.textContent = String(value); });
    return this;
  };

  Wrapped.prototype.html = function (value) {
    if (value === undefined) { return this.nodes.length ? this.nodes[0].innerHTML : undefined; }
    this.nodes.forEach(function (n) { n.innerHTML = String(value); });
    return this;
  };

  function parseEvents(events) {
    return String(events).split(/\s+/).filter(Boolean).map(function (name) {
      var dot = name.indexOf('.');
      return dot < 0 ? { type: name, ns: '' } : { type: name.slice(0, dot), ns: name.slice(dot + 1) };
    });
  }

  Wrapped.prototype.on = function (events, selector, handler) {
    if (typeof selector !== 'string' || typeof handler !== 'function') {
      throw new Error('amo stub $: only .on(events, selector, handler) is implemented');
    }
    var self = this;
    parseEvents(events).forEach(function (ev) {
      self.nodes.forEach(function (node) {
        var listener = function (event) {
          var target = event.target && event.target.closest ? event.target.closest(selector) : null;
          if (target && (node === document || node.contains(target))) { handler.call(target, event); }
        };
        node.addEventListener(ev.type, listener);
        listeners.push({ node: node, type: ev.type, ns: ev.ns, listener: listener });
      });
    });
    return this;
  };

  Wrapped.prototype.off = function (events) {
    var self = this;
    parseEvents(events).forEach(function (ev) {
      listeners = listeners.filter(function (l) {
        var hit = self.nodes.indexOf(l.node) >= 0 && (!ev.type || l.type === ev.type) && l.ns === ev.ns;
        if (hit) { l.node.removeEventListener(l.type, l.listener); }
        return !hit;
      });
    });
    return this;
  };

  function $(arg) {
    if (arg === document || arg instanceof Element) { return new Wrapped([arg]); }
    if (typeof arg !== 'string') { throw new Error('amo stub $: unsupported argument ' + typeof arg); }
    var source = arg.trim();
    if (source.charAt(0) === '<') {
      var template = document.createElement('template');
      template.innerHTML = source;
      return new Wrapped(Array.prototype.slice.call(template.content.childNodes));
    }
    return new Wrapped(Array.prototype.slice.call(document.querySelectorAll(source)));
  }

  $.extend = function (target) {
    if (typeof target === 'boolean') { throw new Error('amo stub $: deep $.extend is not implemented'); }
    for (var i = 1; i < arguments.length; i++) {
      var source = arguments[i] || {};
      Object.keys(source).forEach(function (key) {
        if (source[key] !== undefined) { target[key] = source[key]; }
      });
    }
    return target;
  };

  // --- AMD ------------------------------------------------------------------------------------------
  // With the real jQuery on the page (the tests load Debian's libjs-jquery 3.x), the widget gets it and
  // $authorizedAjax is jQuery.ajax plus the proof header, which is what amo does.
  var jq = window.jQuery && window.jQuery.fn && window.jQuery.fn.jquery ? window.jQuery : null;
  var modules = { jquery: jq || $ };

  function resolve(deps) {
    return deps.map(function (name) {
      if (!(name in modules)) { throw new Error('amo stub AMD: unknown module ' + name); }
      return modules[name];
    });
  }

  window.define = function (deps, factory) {
    window.__widgetModule = factory.apply(null, resolve(deps));
  };
  window.define.amd = { jQuery: true };
  window.require = function (deps, callback) { return callback.apply(null, resolve(deps)); };

  // --- the widget host ------------------------------------------------------------------------------
  function authorizedAjax(options) {
    ajaxLog.push(options.url);
    var method = options.type || options.method || 'GET';
    ajaxCalls.push({ method: method, url: options.url, headers: $.extend({}, options.headers || {}) });
    var proof = config.token ? { 'X-Auth-Token': config.token } : { Authorization: 'Bearer ' + config.apiKey };
    if (jq) {
      return jq.ajax(jq.extend({}, options, { headers: jq.extend({}, options.headers || {}, proof) }));
    }
    var headers = $.extend({}, options.headers || {}, proof, { Accept: 'application/json' });
    if (options.contentType) { headers['Content-Type'] = options.contentType; }
    var binary = options.dataType === 'binary' && options.xhrFields && options.xhrFields.responseType === 'blob';
    var request = fetch(options.url, {
      method: method,
      headers: headers,
      body: options.data,
      cache: 'no-store'
    }).then(function (response) {
      if (response.ok && binary) {
        return response.blob().then(function (blob) { return { data: blob, xhr: { status: response.status } }; });
      }
      return response.text().then(function (body) {
        var xhr = { status: response.status, responseText: body };
        if (!response.ok) { throw { xhr: xhr, textStatus: 'error', error: response.statusText }; }
        if (options.dataType !== 'json') { return { data: body, xhr: xhr }; }
        try {
          return { data: JSON.parse(body), xhr: xhr };
        } catch (e) {
          throw { xhr: xhr, textStatus: 'parsererror', error: e };
        }
      });
    }, function (networkError) {
      // What jQuery reports when the server cannot be reached: status 0.
      throw { xhr: { status: 0, responseText: '' }, textStatus: 'error', error: String(networkError) };
    });
    return {
      then: function (ok, fail) {
        return request.then(
          function (r) { return ok ? ok(r.data, 'success', r.xhr) : r.data; },
          function (e) { if (fail) { return fail(e.xhr, e.textStatus, e.error); } throw e; }
        );
      }
    };
  }

  // Loads script.js the way `widget-zip` ships it for this origin, when the page did not load it already.
  function loadWidget() {
    if (window.__widgetModule) { return Promise.resolve(); }
    return fetch('/static/widget/amocrm/script.js').then(function (r) { return r.text(); }).then(function (code) {
      return new Promise(function (resolve, reject) {
        var script = document.createElement('script');
        script.src = URL.createObjectURL(new Blob([code.split('{{BASE_URL}}').join(location.origin)],
          { type: 'text/javascript' }));
        script.onload = resolve;
        script.onerror = reject;
        document.head.appendChild(script);
      });
    });
  }

  window.amoStub = {
    start: function (i18nBase) {
      var lang = config.lang === 'en' ? 'en' : 'ru';
      // The widget file and its texts are fetched together, as amo has both before it calls render().
      var texts = fetch((i18nBase || 'widget/i18n/') + lang + '.json').then(function (r) { return r.json(); });
      return Promise.all([loadWidget(), texts]).then(function (loaded) {
        var ru = loaded[1];
        var Widget = window.__widgetModule;
        if (typeof Widget !== 'function') { throw new Error('script.js did not define a widget constructor'); }
        var widget = new Widget();
        // view=settings: amo's advanced settings page (area 'advanced_settings', #work-area-<code>) instead
        // of the deal card.
        var settingsPage = config.view === 'settings';
        widget.system = function () {
          return { area: settingsPage ? 'advanced_settings' : 'lcard', subdomain: 'clinic', amouser_id: config.userId };
        };
        widget.get_settings = function () { return { widget_code: 'clinicbridge' }; };
        widget.i18n = function (key) { return ru[key]; };
        widget.render_template = function (params) {
          var caption = (params && params.caption) || {};
          document.getElementById('card-widgets').innerHTML =
            '<div class="card-widgets__widget">' +
            '<div class="' + (caption.class_name || '') + '">' + ru.widget.name + '</div>' +
            '<div class="card-widgets__widget__body">' + params.body + '</div></div>';
        };
        widget.$authorizedAjax = authorizedAjax;
        var results = {};
        results.render = widget.callbacks.render();
        results.init = widget.callbacks.init();
        results.bind_actions = widget.callbacks.bind_actions();
        if (settingsPage) {
          var page = document.createElement('div');
          page.id = 'work-area-clinicbridge';
          document.body.appendChild(page);
          results.advancedSettings = widget.callbacks.advancedSettings();
        }
        window.__widget = widget;
        window.__widgetResults = results;
      }).catch(function (error) {
        errors.push('host: ' + (error && error.stack ? error.stack : String(error)));
      });
    }
  };
})();
