/*
 * ClinicBridge widget for amoCRM / Kommo (interface_version 2, AMD): a thin shell around the common
 * panel (static/widget/common/panel.js, an ES module loaded from our server with import()).
 * Every call to our server goes through self.$authorizedAjax, which adds the disposable X-Auth-Token
 * that proves the account and the user (research/amocrm.md §2.4); the panel never trusts its own state.
 * {{BASE_URL}} is replaced by `clinicbridge amocrm widget-zip --base-url …`.
 */
define(['jquery'], function ($) {
  'use strict';

  var BASE_URL = '{{BASE_URL}}';
  var PANEL_URL = BASE_URL + '/static/widget/common/panel.js';
  // Keep in step with PANEL_MODULES in common/panel.js (a test checks it): preloaded in one wave.
  var MODULES = ['panel.js', 'core.js', 'forms.js', 'sections/account.js'];

  var CustomWidget = function () {
    var self = this;
    var mounted = null;

    function t(key) {
      var texts = self.i18n('panel') || {};
      return texts[key] || key;
    }

    function locale() {
      var lang = (window.APP && (APP.lang_id || APP.lang)) || 'ru';
      return String(lang).toLowerCase().indexOf('en') === 0 ? 'en' : 'ru';
    }

    function currentDealId() {
      var card = (window.APP && APP.data && APP.data.current_card) || null;
      return card && card.id ? String(card.id) : null;
    }

    function parse(text) {
      try { return text ? JSON.parse(text) : null; } catch (e) { return null; }
    }

    // The panel's transport: a Promise over $authorizedAjax that resolves {status, data} for 2xx and
    // rejects {status, data} otherwise (status 0 = the server could not be reached).
    var transport = {
      request: function (req) {
        return new Promise(function (resolve, reject) {
          var blob = req.responseType === 'blob';
          var options = {
            url: BASE_URL + req.path,
            type: req.method || 'GET',
            headers: req.headers || {},
            dataType: blob ? 'binary' : 'json'
          };
          if (blob) { options.xhrFields = { responseType: 'blob' }; }
          if (req.body !== undefined) {
            options.data = JSON.stringify(req.body);
            options.contentType = 'application/json';
          }
          self.$authorizedAjax(options).then(function (data, textStatus, xhr) {
            resolve({ status: xhr ? xhr.status : 200, data: data });
          }, function (xhr) {
            var text = '';
            try { text = xhr ? xhr.responseText : ''; } catch (e) { text = ''; }
            reject({ status: xhr ? xhr.status || 0 : 0, data: parse(text) });
          });
        });
      }
    };

    function area() {
      var nodes = document.querySelectorAll('.cb-panel');
      return nodes.length ? nodes[nodes.length - 1] : null;
    }

    function moduleFailed(root) {
      root.textContent = '';
      var p = document.createElement('p');
      p.className = 'cb-error';
      p.setAttribute('role', 'alert');
      p.textContent = t('error');
      var retry = document.createElement('button');
      retry.type = 'button';
      retry.className = 'button-input cb-retry';
      retry.textContent = t('retry');
      root.appendChild(p);
      root.appendChild(retry);
    }

    function preload() {
      var cssHref = BASE_URL + '/static/widget/common/panel.css';
      if (!document.querySelector('link[rel="stylesheet"][href="' + cssHref + '"]')) {
        var css = document.createElement('link');
        css.rel = 'stylesheet';
        css.href = cssHref;
        document.head.appendChild(css);
      }
      MODULES.forEach(function (name) {
        var href = BASE_URL + '/static/widget/common/' + name;
        if (document.querySelector('link[rel="modulepreload"][href="' + href + '"]')) { return; }
        var link = document.createElement('link');
        link.rel = 'modulepreload';
        link.href = href;
        document.head.appendChild(link);
      });
    }

    function get(path) {
      var request = transport.request({ method: 'GET', path: path });
      request.catch(function () {}); // read by the panel when it adopts the promise
      return request;
    }

    function mount(root, settingsScreen) {
      root = root && root.nodeType === 1 ? root : area();
      if (!root) { return; }
      root.textContent = t('loading');
      var deal = currentDealId();
      // The first API answers arrive while the modules load, not after; asked first, they get one of the
      // browser's six connections before the module files do.
      var early = settingsScreen ? {} : {
        session: get('/api/v1/widget/session'),
        stay: deal ? get('/api/v1/deals/' + encodeURIComponent(deal) + '/stay') : null
      };
      early.texts = fetch(BASE_URL + '/static/widget/common/i18n/' + locale() + '.json').then(function (r) {
        return r.ok ? r.json() : Promise.reject(r.status);
      });
      early.texts.catch(function () {});
      preload();
      import(PANEL_URL).then(function (panel) {
        var options = { transport: transport, early: early, dealId: deal, locale: locale(), shell: 'amocrm' };
        return settingsScreen ? panel.mountSettings(root, options) : panel.mountPanel(root, options);
      }).then(function (handle) { mounted = handle; }, function () { moduleFailed(root); });
    }

    // The advanced settings page (location advanced_settings) is a whole page: amo gives it
    // #work-area-<widget code>; the admins' settings screen is mounted there.
    function mountSettingsPage() {
      var code = (self.get_settings && self.get_settings().widget_code) || '';
      var page = document.getElementById('work-area-' + code);
      if (!page) { return; }
      var root = document.createElement('div');
      root.className = 'cb-panel cb-settings-page';
      root.style.maxWidth = '960px';
      root.style.padding = '16px';
      page.textContent = '';
      page.appendChild(root);
      mount(root, true);
    }

    // The Digital Pipeline action's form: amo echoes its settings in every DP hook, and that is how our
    // server knows a hook comes from this account's action. The hidden setting gets the portal's DP secret
    // from our API (admins only); people never see or type it.
    function fillDpSecret() {
      var input = document.querySelector(
        'input[name="clinicbridge_secret"], input[name$="[clinicbridge_secret]"]'
      );
      if (!input) { return; }
      var row = input.closest('.widget_settings_block__item_field') || input.parentNode;
      if (row && row.style) { row.style.display = 'none'; }
      var note = document.createElement('p');
      note.className = 'cb-dp-note';
      row.parentNode.insertBefore(note, row.nextSibling);
      transport.request({ method: 'GET', path: '/api/v1/amocrm/dp-settings' }).then(function (answer) {
        var secret = answer.data && answer.data.secret;
        if (!secret) { throw new Error('no secret'); }
        input.value = secret;
        input.dispatchEvent(new Event('input', { bubbles: true }));
        input.dispatchEvent(new Event('change', { bubbles: true }));
        note.textContent = t('dp_secret_filled');
      }).catch(function () {
        note.textContent = t('dp_secret_failed');
        note.setAttribute('role', 'alert');
      });
    }

    this.callbacks = {
      render: function () {
        if (self.system().area === 'lcard') {
          self.render_template({
            caption: { class_name: 'cb-caption' },
            body: '<div class="cb-panel" style="max-width:100%;min-width:0"></div>',
            render: ''
          });
          mount();
        }
        return true;
      },
      init: function () {
        return true;
      },
      bind_actions: function () {
        // Only the shell's own retry (module failed to load); the panel binds its own elements.
        $(document).off('click.clinicbridge').on('click.clinicbridge', '.cb-retry', function () { mount(); });
        return true;
      },
      settings: function () {
        // The modal keeps amo's own install fields; the full settings live on the advanced page.
        var modal = document.querySelector('.widget_settings_block__descr');
        if (modal) {
          var hint = document.createElement('p');
          hint.className = 'cb-settings-hint';
          hint.textContent = t('settings_hint');
          modal.appendChild(hint);
        }
        return true;
      },
      advancedSettings: function () {
        mountSettingsPage();
        return true;
      },
      dpSettings: function () {
        fillDpSecret();
        return true;
      },
      onSave: function () {
        // amo treats the integration as configured only when this resolves true: do so only once our
        // server confirms the token and the account.
        return new Promise(function (resolve) {
          transport.request({ method: 'GET', path: '/api/v1/widget/session' })
            .then(function () { resolve(true); }, function () { resolve(false); });
        });
      },
      destroy: function () {
        $(document).off('click.clinicbridge');
        if (mounted) { mounted.destroy(); mounted = null; }
      }
    };
    return this;
  };

  return CustomWidget;
});
