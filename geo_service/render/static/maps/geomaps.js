/* geo_service map pages: popups, search, point layers and viewport loading for the Folium maps.
 *
 * One page = one coordinate system (WGS84 for OSM/Tianditu, GCJ-02 for Amap). The server
 * converts every overlay before it reaches the page; the only conversion done here is the
 * browser's own geolocation (always WGS84), shifted to GCJ-02 on Amap pages so that the
 * "locate me" dot lands on the right street.
 */
(function () {
  'use strict';

  var GM = (window.GeoMaps = {
    map: null,
    crs: 'wgs84',
    layers: {},
    index: {},
    units: {},
    options: {},
  });

  // WGS84 -> GCJ-02: the shared port in ../resident/coords.js (loaded before this file).
  GM.wgs84ToGcj02 = window.wgs84ToGcj02;

  // --- page setup ------------------------------------------------------------------------
  GM.setup = function (map, options) {
    GM.map = map;
    GM.options = options || {};
    GM.crs = GM.options.crs || 'wgs84';
    if (GM.options.bounds) {
      // Not animated: a zoom animation started during page load can leave Leaflet waiting for
      // a transitionend that never comes, and every later setView is then ignored.
      map.fitBounds(GM.options.bounds, { maxZoom: GM.options.maxZoom || 17, animate: false });
    }
    if (GM.crs === 'gcj02') {
      // Browser geolocation is WGS84; shift it before Leaflet (and the locate control) see it.
      var handle = map._handleGeolocationResponse;
      map._handleGeolocationResponse = function (pos) {
        var c = pos.coords;
        var g = GM.wgs84ToGcj02(c.longitude, c.latitude);
        var coords = {
          latitude: g[1],
          longitude: g[0],
          accuracy: c.accuracy,
          altitude: c.altitude,
          altitudeAccuracy: c.altitudeAccuracy,
          heading: c.heading,
          speed: c.speed,
        };
        return handle.call(this, { coords: coords, timestamp: pos.timestamp });
      };
    }
  };

  GM.register = function (name, layer) {
    GM.layers[name] = layer;
    if (layer && layer.eachLayer) {
      layer.eachLayer(function (l) {
        var code = l.feature ? l.feature.properties.code : l.options.code;
        if (code && GM.index[code]) GM.index[code].group = layer;
        else if (code && GM.units[code]) GM.units[code].group = layer;
      });
    }
  };

  /** How many features a registered layer holds (markers inside clusters included). */
  GM.count = function (name) {
    var layer = GM.layers[name];
    return layer && layer.getLayers ? layer.getLayers().length : 0;
  };

  GM.find = function (code) {
    return GM.index[code] ? GM.index[code].layer : null;
  };

  // --- HTML helpers ----------------------------------------------------------------------
  function esc(value) {
    if (value === null || value === undefined || value === '') return '—';
    return String(value).replace(/[&<>"']/g, function (ch) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[ch];
    });
  }
  GM.esc = esc;

  function table(rows) {
    var html = '<table class="gm-table">';
    rows.forEach(function (r) {
      if (r[1] === undefined) return;
      html += '<tr><th>' + esc(r[0]) + '</th><td>' + (r[2] ? r[1] : esc(r[1])) + '</td></tr>';
    });
    return html + '</table>';
  }

  function tel(phone) {
    if (!phone) return '—';
    return '<a href="tel:' + esc(String(phone).replace(/[^0-9+]/g, '')) + '">' + esc(phone) + '</a>';
  }

  function number(v) {
    return v === null || v === undefined ? '—' : Number(v).toLocaleString('zh-CN');
  }

  var LEVEL = { grid: '网格', community: '社区', street: '街道', district: '区' };

  function gridHref(code) {
    var tpl = GM.options.gridHref;
    return tpl ? tpl.replace('{code}', encodeURIComponent(code)) : null;
  }

  function unitPopup(p) {
    var level = LEVEL[p.level] || '';
    var rows = [
      [level + '编码', p.code],
      ['名称', p.name],
    ];
    if (p.level === 'grid') {
      rows.push(['社区', p.community]);
      rows.push(['网格员', p.officer]);
      rows.push(['电话', tel(p.phone), true]);
    } else {
      rows.push(['网格数', number(p.grids), true]);
    }
    rows.push(['人口', number(p.population), true]);
    if (p.ratio !== undefined) {
      rows.push(['面积覆盖率', (p.ratio * 100).toFixed(1) + '%']);
      rows.push(['人口覆盖率', (p.pop_ratio * 100).toFixed(1) + '%']);
    }
    var html = '<div class="gm-popup"><b>' + esc(p.name) + '</b>' + table(rows);
    if (p.level === 'grid' && gridHref(p.code)) {
      html += '<a href="' + esc(gridHref(p.code)) + '">网格详情地图 ›</a>';
    }
    return html + '</div>';
  }

  /** onEachFeature for grids, communities, streets and districts. */
  GM.bindUnit = function (feature, layer) {
    var p = feature.properties;
    // Content is built when first shown: thousands of features open faster.
    layer.bindTooltip(function () {
      var tip = esc(LEVEL[p.level] || '') + ' ' + esc(p.code) + '<br>' + esc(p.name);
      if (p.officer) tip += '<br>网格员：' + esc(p.officer);
      if (p.ratio !== undefined) tip += '<br>覆盖率 ' + (p.ratio * 100).toFixed(1) + '%';
      return tip;
    }, { sticky: true });
    layer.bindPopup(function () { return unitPopup(p); }, { maxWidth: 320 });
    if (p.level === 'grid') GM.index[p.code] = { layer: layer, group: GM.index[p.code] && GM.index[p.code].group };
    else if (p.code) GM.units[p.code] = { layer: layer, group: GM.units[p.code] && GM.units[p.code].group };
  };

  /** onEachFeature for shapes that only need a label (radius discs, gaps). */
  GM.bindLabel = function (feature, layer) {
    layer.bindTooltip(esc(feature.properties.label), { sticky: true });
  };

  // --- point layers (stalls, vendor clusters, candidate sites) -----------------------------
  var SERVICE_GLYPH = { 修鞋: '鞋', 修车: '车', 修锁配钥匙: '锁' };
  var SERVICE_ORDER = ['修鞋', '修车', '修锁配钥匙'];

  /* Every look a marker can have, and what the legend says of it: the markers are styled from
     this table and the legend lists the entries the page draws (GeoMaps.markerLegend), so no
     colour goes unexplained. Order = legend order. */
  var MARKER_STYLES = [
    ['stall', 'gm-stall', '修', '小蓝棚（正常营业）'],
    ['stall-suspended', 'gm-stall gm-suspended', '修', '小蓝棚：暂停营业（灰色）'],
    ['stall-relocated', 'gm-stall gm-relocated', '修', '小蓝棚：已迁址，此处为原址（虚线框）'],
    ['stall-retired', 'gm-stall gm-retired', '修', '小蓝棚：已撤销'],
    ['vendor', 'gm-vendor', '集', '便民摊点群（正常营业）'],
    ['vendor-suspended', 'gm-vendor gm-suspended', '集', '便民摊点群：暂停营业（灰色）'],
    ['vendor-relocated', 'gm-vendor gm-relocated', '集', '便民摊点群：已迁址（原址）'],
    ['vendor-retired', 'gm-vendor gm-retired', '集', '便民摊点群：已撤销'],
    ['candidate', 'gm-candidate', '＋', '候选点'],
  ];
  var STYLE = {};
  MARKER_STYLES.forEach(function (s) { STYLE[s[0]] = { cls: s[1], text: s[2], label: s[3] }; });
  var used = { styles: {}, glyphs: {}, clustered: false };

  function styleKey(base, p) {
    return p.status && p.status !== 'active' && STYLE[base + '-' + p.status] ? base + '-' + p.status : base;
  }

  function stallIcon(p) {
    var glyph = (p.services || []).map(function (s) { return SERVICE_GLYPH[s] || '修'; }).join('');
    (p.services || []).forEach(function (s) { if (SERVICE_GLYPH[s]) used.glyphs[s] = true; });
    var key = styleKey('stall', p);
    used.styles[key] = true;
    var w = 14 + 13 * Math.max(glyph.length, 1);
    return L.divIcon({ className: 'gm-icon ' + STYLE[key].cls, html: esc(glyph || '修'), iconSize: [w, 24], iconAnchor: [w / 2, 12] });
  }

  function clusterIcon(p) {
    var key = styleKey('vendor', p);
    used.styles[key] = true;
    return L.divIcon({ className: 'gm-icon ' + STYLE[key].cls, html: '集', iconSize: [26, 26], iconAnchor: [13, 13] });
  }

  function candidateIcon() {
    used.styles.candidate = true;
    return L.divIcon({ className: 'gm-icon gm-candidate', html: '＋', iconSize: [26, 26], iconAnchor: [13, 13] });
  }

  function distanceRow(p) {
    return p.distance_m === undefined ? undefined : number(Math.round(p.distance_m)) + ' 米';
  }

  // The server words the state (a relocated one says where it went); null means open for business.
  function stateText(p) {
    return p.status_text || '正常营业';
  }

  function stateNote(p) {
    if (!p.status_text) return '';
    return '<div class="gm-state gm-state-' + esc(p.status) + '">' + esc(p.status_text) + '</div>';
  }

  function stallPopup(p) {
    return '<div class="gm-popup"><b>' + esc(p.name) + '</b>' + stateNote(p) + table([
      ['电子编号', p.code],
      ['服务', (p.services || []).join('、')],
      ['营业时间', p.hours_text],
      ['状态', stateText(p)],
      ['地址', p.address],
      ['摊主', p.operator],
      ['电话', tel(p.phone), true],
      ['所在网格', p.grid_code],
      ['距网格', distanceRow(p)],
    ]) + '</div>';
  }

  function clusterPopup(p) {
    return '<div class="gm-popup"><b>' + esc(p.name) + '</b>' + stateNote(p) + table([
      ['编号', p.code],
      ['类型', p.kind],
      ['营业时间', p.hours_text],
      ['摊位数', p.pitches],
      ['状态', stateText(p)],
      ['地址', p.address],
      ['管理', p.operator],
      ['所在网格', p.grid_code],
      ['距网格', distanceRow(p)],
    ]) + '</div>';
  }

  function candidatePopup(p) {
    return '<div class="gm-popup"><b>候选点 ' + esc(p.code) + '</b>' + table([
      ['经度 (WGS84)', p.lon_wgs84],
      ['纬度 (WGS84)', p.lat_wgs84],
      ['所在网格', p.grid_code],
    ]) + '</div>';
  }

  var KINDS = {
    stall: [stallIcon, stallPopup],
    vendor_cluster: [clusterIcon, clusterPopup],
    candidate: [candidateIcon, candidatePopup],
  };

  /** Add markers built from compact rows (columns + arrays, lat/lon in the page's CRS). */
  GM.addPoints = function (group, kind, columns, rows) {
    var make = KINDS[kind];
    var markers = rows.map(function (row) {
      var p = {};
      columns.forEach(function (c, i) { p[c] = row[i]; });
      var m = L.marker([p.lat, p.lon], { icon: make[0](p), code: p.code, title: p.code + ' ' + (p.name || '') });
      m.bindPopup(function () { return make[1](p); }, { maxWidth: 320 });
      m.bindTooltip(function () {
        return esc(p.code) + (p.name ? '<br>' + esc(p.name) : '') +
          (p.status_text ? '<br>' + esc(p.status_text) : '');
      });
      GM.index[p.code] = { layer: m, group: group };
      return m;
    });
    if (group.addLayers) {
      used.clustered = used.clustered || rows.length > 0;
      group.addLayers(markers);
    } else {
      markers.forEach(function (m) { group.addLayer(m); });
    }
    GM.markerLegend();
  };

  function legendRow(swatch, label) {
    var row = document.createElement('div');
    row.className = 'gm-row';
    var text = document.createElement('span');
    text.textContent = label;
    row.appendChild(swatch);
    row.appendChild(text);
    return row;
  }

  function iconSwatch(cls, text) {
    var s = document.createElement('span');
    s.className = 'gm-icon gm-legend-icon ' + cls;
    s.textContent = text;
    return s;
  }

  /** The legend's marker rows: one per marker style drawn on the page (a style the legend
   *  already shows, such as the coverage map's candidates, is not repeated), what the glyphs
   *  mean, and the count bubbles of clustered markers. */
  GM.markerLegend = function () {
    var legends = document.querySelectorAll('.gm-legend');
    Array.prototype.forEach.call(legends, function (legend) {
      var box = legend.querySelector('.gm-marker-rows');
      if (!box) {
        box = document.createElement('div');
        box.className = 'gm-marker-rows';
        legend.appendChild(box);
      }
      box.textContent = '';
      MARKER_STYLES.forEach(function (s) {
        if (!used.styles[s[0]]) return;
        var sel = '.gm-icon.' + s[1].split(' ').join('.');
        var shown = Array.prototype.some.call(legend.querySelectorAll(sel), function (el) {
          return !box.contains(el);
        });
        if (!shown) box.appendChild(legendRow(iconSwatch(s[1], s[2]), s[3]));
      });
      var glyphs = SERVICE_ORDER.filter(function (s) { return used.glyphs[s]; });
      if (glyphs.length) {
        var note = document.createElement('small');
        note.className = 'gm-glyphs';
        note.textContent = '小蓝棚上的字：' + glyphs.map(function (s) {
          return SERVICE_GLYPH[s] + ' = ' + s;
        }).join('，');
        box.appendChild(note);
      }
      if (used.clustered) {
        var bubble = document.createElement('span');
        bubble.className = 'gm-legend-bubble';
        bubble.textContent = '12';
        box.appendChild(legendRow(bubble, '彩色圆圈：此处聚合的点数（绿 / 黄 / 橙：少 / 中 / 多），点击放大展开'));
      }
    });
  };

  /** The officer's card: the unit's open 随手拍 cases, read from the service when the page
   *  opens (the page is cached; the cases change). Text only: no case field becomes HTML. */
  GM.unitCases = function (url, caseHref) {
    var count = document.querySelector('.gm-card .gm-cases-count');
    var box = document.querySelector('.gm-card .gm-cases');
    if (!count) return;
    fetch(url, { headers: { Accept: 'application/json' } })
      .then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      })
      .then(function (body) {
        var c = body.cases || {};
        count.textContent = '未结案件 ' + number(c.open) + ' 件' +
          (c.open ? '，其中超期 ' + number(c.overdue) + ' 件' : '');
        if (c.overdue) count.className = 'gm-cases-count gm-overdue';
        var items = (c.items || []).slice(0, 5);
        if (!box || !items.length) return;
        var list = document.createElement('ul');
        items.forEach(function (k) {
          var li = document.createElement('li');
          var a = document.createElement('a');
          a.href = caseHref.replace('{id}', encodeURIComponent(k.id));
          a.textContent = k.id;
          li.appendChild(a);
          var due = k.deadline ? '，期限 ' + String(k.deadline).slice(0, 16).replace('T', ' ') : '';
          li.appendChild(document.createTextNode(' ' + (k.category || '') + ' · ' +
            (k.status_text || k.status || '') + due));
          if (k.overdue) {
            var late = document.createElement('b');
            late.className = 'gm-overdue';
            late.textContent = ' 超期';
            li.appendChild(late);
          }
          list.appendChild(li);
        });
        box.appendChild(list);
        if (c.open > items.length) {
          var more = document.createElement('small');
          more.textContent = '按期限排列，显示前 ' + items.length + ' 件';
          box.appendChild(more);
        }
      })
      .catch(function () { count.textContent = '案件暂时无法读取'; });
  };

  // --- controls --------------------------------------------------------------------------
  GM.htmlControl = function (map, position, html, className) {
    var Ctl = L.Control.extend({
      onAdd: function () {
        var div = L.DomUtil.create('div', 'gm-control ' + (className || ''));
        div.innerHTML = html;
        L.DomEvent.disableClickPropagation(div);
        L.DomEvent.disableScrollPropagation(div);
        return div;
      },
    });
    var ctl = new Ctl({ position: position });
    ctl.addTo(map);
    if (/\bgm-legend\b/.test(className || '')) GM.markerLegend();
    return ctl;
  };

  function show(hit, map) {
    var layer = hit.layer;
    if (hit.group && !map.hasLayer(hit.group)) map.addLayer(hit.group);
    if (hit.group && hit.group.zoomToShowLayer) {
      hit.group.zoomToShowLayer(layer, function () { layer.openPopup(); });
    } else if (layer.getBounds) {
      map.fitBounds(layer.getBounds(), { maxZoom: 17 });
      layer.openPopup(layer.getBounds().getCenter());
    } else {
      map.setView(layer.getLatLng(), Math.max(map.getZoom(), 17));
      layer.openPopup();
    }
  }

  /** Look a grid code or stall number up; falls back to the service for grids not inlined. */
  GM.search = function (query) {
    var map = GM.map;
    var code = String(query || '').trim().toUpperCase();
    if (!code) return Promise.resolve(false);
    var hit = GM.index[code];
    if (hit) {
      show(hit, map);
      return Promise.resolve(true);
    }
    var loader = GM.loader;
    if (loader && /^\d{15}$/.test(code)) {
      return loader.fetchCode(code).then(function (layer) {
        if (!layer) return false;
        show({ layer: layer, group: loader.layer }, map);
        return true;
      });
    }
    if (GM.options.searchUrl) return searchService(String(query).trim(), map);
    return Promise.resolve(false);
  };

  /** Names and pinyin: the service's search; the best hit is shown (its own popup when the
   *  page holds it, else a popup at its point). */
  function searchService(q, map) {
    var url = GM.options.searchUrl + '?limit=1&q=' + encodeURIComponent(q.slice(0, 50));
    return fetch(url)
      .then(function (r) { return r.ok ? r.json() : { results: [] }; })
      .then(function (body) {
        var top = body.results && body.results[0];
        if (!top) return false;
        var hit = GM.index[top.code] || GM.units[top.code];
        if (hit) {
          show(hit, map);
          return true;
        }
        if (top.kind === 'grid' && GM.loader) {
          return GM.loader.fetchCode(top.code).then(function (layer) {
            if (!layer) return false;
            show({ layer: layer, group: GM.loader.layer }, map);
            return true;
          });
        }
        var ll = GM.crs === 'gcj02' ? GM.wgs84ToGcj02(top.lon, top.lat) : [top.lon, top.lat];
        var kinds = { grid: '网格', community: '社区', street: '街道', stall: '小蓝棚', vendor_cluster: '便民摊点群' };
        var html = '<div class="gm-popup"><b>' + esc(top.name) + '</b>' +
          table([[(kinds[top.kind] || '') + '编码', top.code]]);
        if (top.link) html += '<a href="' + esc(top.link) + '">详情 ›</a>';
        map.setView([ll[1], ll[0]], Math.max(map.getZoom(), top.kind === 'street' ? 14 : 16));
        L.popup({ maxWidth: 320 }).setLatLng([ll[1], ll[0]]).setContent(html + '</div>').openOn(map);
        return true;
      })
      .catch(function () { return false; });
  }

  GM.searchControl = function (map) {
    var Ctl = L.Control.extend({
      onAdd: function () {
        var div = L.DomUtil.create('div', 'gm-control gm-search');
        div.innerHTML =
          '<form><input type="search" list="gm-codes" placeholder="' +
          (GM.options.searchUrl ? '编码 / 名称 / 拼音' : '网格编码 / 摊点编号') + '" ' +
          'aria-label="网格编码或摊点编号"><button type="submit">查找</button></form>' +
          '<datalist id="gm-codes"></datalist><div class="gm-search-msg"></div>';
        var list = div.querySelector('datalist');
        var codes = Object.keys(GM.index).sort();
        if (codes.length <= 5000) {
          list.innerHTML = codes.map(function (c) { return '<option value="' + esc(c) + '">'; }).join('');
        }
        var msg = div.querySelector('.gm-search-msg');
        div.querySelector('form').addEventListener('submit', function (ev) {
          ev.preventDefault();
          var q = div.querySelector('input').value;
          msg.textContent = '';
          GM.search(q).then(function (found) {
            msg.textContent = found ? '' : '未找到：' + q;
          });
        });
        L.DomEvent.disableClickPropagation(div);
        return div;
      },
    });
    new Ctl({ position: 'topleft' }).addTo(map);
  };

  // --- grids loaded by viewport (cities too large to inline) ------------------------------
  GM.viewportLoader = function (map, layer, options) {
    var hint = GM.htmlControl(map, 'bottomright', '', 'gm-hint');
    var box = hint.getContainer();
    var pending = null;
    var loader = { layer: layer };
    GM.loader = loader;

    function url(params) {
      var q = Object.keys(params).map(function (k) {
        return encodeURIComponent(k) + '=' + encodeURIComponent(params[k]);
      });
      return options.url + (options.url.indexOf('?') < 0 ? '?' : '&') + q.join('&');
    }

    function load(params) {
      if (pending) pending.abort();
      pending = new AbortController();
      return fetch(url(params), { signal: pending.signal })
        .then(function (r) {
          if (!r.ok) throw new Error('HTTP ' + r.status);
          return r.json();
        });
    }

    function failed(err) {
      if (err && err.name === 'AbortError') return null;
      box.textContent = '网格加载失败（需要 geo_service 服务）';
      console.warn('grid loading failed', err);
      return null;
    }

    function update() {
      if (!map.hasLayer(layer)) return;
      if (map.getZoom() < options.minZoom) {
        layer.clearLayers();
        box.textContent = '放大到 ' + options.minZoom + ' 级以显示网格';
        return;
      }
      var b = map.getBounds();
      var bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]
        .map(function (v) { return v.toFixed(6); }).join(',');
      box.textContent = '加载网格…';
      load({ bbox: bbox, basemap: options.basemap, limit: options.limit }).then(function (fc) {
        if (!fc) return;
        layer.clearLayers();
        layer.addData(fc);
        reopen();
        box.textContent = fc.truncated
          ? '显示 ' + fc.features.length + ' / ' + fc.numberMatched + ' 个网格，请放大'
          : '网格 ' + fc.features.length + ' 个';
      }, failed);
    }

    // A grid found by the search box: the move to it reloads the view, so open it again then.
    function reopen() {
      var l = loader.focus && GM.find(loader.focus);
      loader.focus = null;
      if (l && layer.hasLayer(l)) l.openPopup(l.getBounds().getCenter());
    }

    loader.fetchCode = function (code) {
      return load({ code: code, basemap: options.basemap }).then(function (fc) {
        if (!fc || !fc.features.length) return null;
        layer.addData(fc);
        loader.focus = code;
        return GM.find(code);
      }, failed);
    };

    map.on('moveend', update);
    layer.on('add', update);
    update();
    return loader;
  };
})();
