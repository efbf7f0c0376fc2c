"""The stand-alone HTML viewer written by :mod:`geomot.viz._html`: page skeleton, style sheet and script.

The page needs no network: the geometry is inlined as base64 typed arrays in a JSON block, the script below draws
it with WebGL (smooth two-sided shading with a head light and a key light, round shaded point sprites, lines) and
falls back to a Canvas 2D painter's-algorithm renderer when WebGL is unavailable. Address fragments:
``#renderer=canvas2d`` forces the fallback, ``#renderer=webgl`` skips WebGL 2, ``#time=0.5`` opens at that time.
When the scene has several frames, a slider and a play button interpolate linearly between them. After its first
drawing the script sets ``data-status="ok"`` and ``data-renderer`` on ``<body>`` (``"error: ..."`` on failure),
which the tests read back from a headless browser.
"""

from __future__ import annotations

__all__ = ["PAGE", "SCRIPT", "STYLE"]

STYLE = """
[hidden] { display: none !important; }
html, body { margin: 0; height: 100%; overflow: hidden; background: #ffffff;
  font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #222; }
#view { position: absolute; inset: 0; width: 100%; height: 100%; display: block; cursor: grab; }
#title { position: absolute; top: 10px; left: 14px; font-size: 16px; font-weight: 600; pointer-events: none; }
#help { position: absolute; top: 10px; right: 14px; font-size: 11px; color: #777; pointer-events: none; }
#controls { position: absolute; left: 14px; bottom: 12px; display: flex; align-items: center; gap: 10px;
  font-size: 13px; background: rgba(255,255,255,0.8); padding: 4px 8px; border-radius: 6px; }
#controls button { font-size: 13px; min-width: 64px; }
#slider { width: 260px; }
#colorbar { position: absolute; right: 16px; bottom: 14px; width: 240px; font-size: 12px; }
#colorbar .ramp { height: 12px; border: 1px solid #555; }
#colorbar .labels { display: flex; justify-content: space-between; margin-top: 2px; }
#colorbar .name { text-align: center; margin-bottom: 3px; }
#error { position: absolute; top: 40%; width: 100%; text-align: center; color: #b00; font-size: 15px; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="geomot __VERSION__">
<title>__TITLE__</title>
<style>__STYLE__</style>
</head>
<body data-status="loading">
<canvas id="view"></canvas>
<div id="title">__TITLE__</div>
<div id="help">drag: rotate &middot; wheel: zoom &middot; shift+drag: pan &middot; double-click: reset</div>
<div id="controls" hidden>
  <button id="play" type="button">&#9654; play</button>
  <input id="slider" type="range" min="0" max="1000" step="1" value="0">
  <span id="time"></span>
</div>
<div id="colorbar" hidden><div class="name"></div><div class="ramp"></div>
  <div class="labels"><span class="lo"></span><span class="hi"></span></div></div>
<script type="application/json" id="geomot-data">__DATA__</script>
<script>__SCRIPT__</script>
</body>
</html>
"""

SCRIPT = r"""
(function () {
"use strict";
var body = document.body;
window.addEventListener("error", function (ev) { fail(ev.message || String(ev)); });
function fail(msg) {
  body.dataset.status = "error: " + msg;
  var e = document.createElement("div"); e.id = "error"; e.textContent = "geomot viewer: " + msg; body.appendChild(e);
}
var D = JSON.parse(document.getElementById("geomot-data").textContent);

function decode(s, Type) {
  var bin = atob(s), u8 = new Uint8Array(bin.length);
  for (var i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
  return new Type(u8.buffer);
}

// ---- small vector / matrix helpers (column-major 4x4) ----
function sub(a, b) { return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]; }
function add(a, b) { return [a[0] + b[0], a[1] + b[1], a[2] + b[2]]; }
function scale(a, s) { return [a[0] * s, a[1] * s, a[2] * s]; }
function dot(a, b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
function cross(a, b) { return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]; }
function unit(a) { var n = Math.sqrt(dot(a, a)) || 1; return [a[0] / n, a[1] / n, a[2] / n]; }
function rotate(v, axis, ang) {  // Rodrigues
  var k = unit(axis), c = Math.cos(ang), s = Math.sin(ang);
  return add(add(scale(v, c), scale(cross(k, v), s)), scale(k, dot(k, v) * (1 - c)));
}
function lookAt(eye, center, up) {
  var z = unit(sub(eye, center)), x = unit(cross(up, z)), y = cross(z, x);
  return [x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0,
          -dot(x, eye), -dot(y, eye), -dot(z, eye), 1];
}
function perspective(fovy, aspect, near, far) {
  var t = 1 / Math.tan(fovy / 2);
  return [t / aspect, 0, 0, 0, 0, t, 0, 0, 0, 0, (far + near) / (near - far), -1,
          0, 0, 2 * far * near / (near - far), 0];
}

// ---- scene ----
var objects = D.objects.map(function (o) {
  var ob = {
    kind: o.kind, n: o.n, opacity: o.opacity, size: o.size,
    frames: o.frames.map(function (s) { return decode(s, Float32Array); }),
    colors: o.colors.map(function (s) { return decode(s, Uint8Array); }),
    faces: o.faces ? decode(o.faces, Uint32Array) : null
  };
  ob.pos = new Float32Array(3 * o.n); ob.col = new Float32Array(3 * o.n); ob.nrm = new Float32Array(3 * o.n);
  return ob;
});
var times = D.times, T = times.length;
var cam0 = { dir: unit(D.view.dir), up: unit(D.view.up), center: D.view.center.slice(), dist: D.view.dist };
var cam = JSON.parse(JSON.stringify(cam0));
var radius = D.view.radius, fovy = D.view.fovy * Math.PI / 180;
var bg = D.background;

function vertexNormals(pos, faces, out) {
  out.fill(0);
  for (var f = 0; f < faces.length; f += 3) {
    var a = 3 * faces[f], b = 3 * faces[f + 1], c = 3 * faces[f + 2];
    var ux = pos[b] - pos[a], uy = pos[b + 1] - pos[a + 1], uz = pos[b + 2] - pos[a + 2];
    var vx = pos[c] - pos[a], vy = pos[c + 1] - pos[a + 1], vz = pos[c + 2] - pos[a + 2];
    var nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
    out[a] += nx; out[a + 1] += ny; out[a + 2] += nz; out[b] += nx; out[b + 1] += ny; out[b + 2] += nz;
    out[c] += nx; out[c + 1] += ny; out[c + 2] += nz;
  }
  for (var i = 0; i < out.length; i += 3) {
    var n = Math.sqrt(out[i] * out[i] + out[i + 1] * out[i + 1] + out[i + 2] * out[i + 2]) || 1;
    out[i] /= n; out[i + 1] /= n; out[i + 2] /= n;
  }
}

var currentTime = times[0];
function setTime(t) {  // linear interpolation between the stored frames
  currentTime = Math.min(Math.max(t, times[0]), times[T - 1]);
  var k = 0;
  while (k < T - 2 && times[k + 1] <= currentTime) k++;
  var span = T > 1 ? times[k + 1] - times[k] : 0;
  var a = T > 1 && span > 0 ? Math.min(Math.max((currentTime - times[k]) / span, 0), 1) : 0;
  objects.forEach(function (o) {
    var f0 = o.frames[Math.min(k, o.frames.length - 1)], f1 = o.frames[Math.min(k + 1, o.frames.length - 1)];
    var c0 = o.colors[Math.min(k, o.colors.length - 1)], c1 = o.colors[Math.min(k + 1, o.colors.length - 1)];
    for (var i = 0; i < o.pos.length; i++) {
      o.pos[i] = (1 - a) * f0[i] + a * f1[i];
      o.col[i] = ((1 - a) * c0[i] + a * c1[i]) / 255;
    }
    if (o.faces) vertexNormals(o.pos, o.faces, o.nrm);
    o.dirty = true;
  });
  var label = document.getElementById("time");
  if (label) label.textContent = "t = " + currentTime.toFixed(3);
}

// ---- canvas and camera matrices ----
var canvas = document.getElementById("view");
function resize() {
  var dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(canvas.clientWidth * dpr));
  canvas.height = Math.max(1, Math.round(canvas.clientHeight * dpr));
}
function fitDistance(c, aspect) {  // smallest distance at which every box corner is inside the frustum
  var side = unit(cross(c.up, c.dir)), ty = Math.tan(fovy / 2), d = 0;
  D.view.corners.forEach(function (r) {
    var lat = Math.max(Math.abs(dot(r, side)) / (aspect * ty), Math.abs(dot(r, c.up)) / ty);
    d = Math.max(d, D.view.margin * lat + dot(r, c.dir));
  });
  return d > 0 ? d : c.dist;
}
var userMoved = false;  // until the user moves the camera, it is refitted to the canvas at every drawing
function matrices() {
  if (!userMoved) cam.dist = fitDistance(cam0, canvas.width / canvas.height);
  var eye = add(cam.center, scale(cam.dir, cam.dist));
  var near = Math.max(cam.dist - 3 * radius, cam.dist * 1e-3), far = cam.dist + 3 * radius;
  return { mv: lookAt(eye, cam.center, cam.up), p: perspective(fovy, canvas.width / canvas.height, near, far) };
}

// ---- WebGL renderer ----
var VS = "attribute vec3 aPos; attribute vec3 aNrm; attribute vec3 aCol;" +
  "uniform mat4 uMV; uniform mat4 uP; uniform mat3 uN; uniform float uSize;" +
  "varying vec3 vN; varying vec3 vC; varying vec3 vV;" +
  "void main() { vec4 p = uMV * vec4(aPos, 1.0); vV = p.xyz; vN = uN * aNrm; vC = aCol;" +
  " gl_Position = uP * p; gl_PointSize = uSize; }";
var FS = "precision mediump float; varying vec3 vN; varying vec3 vC; varying vec3 vV;" +
  "uniform float uMode; uniform float uAlpha;" +
  "vec3 shade(vec3 n, vec3 v, vec3 c) {" +
  " vec3 key = normalize(vec3(0.45, 0.75, 0.5)); vec3 fill = normalize(vec3(-0.6, -0.2, 0.4));" +
  " float d = 0.5 * max(dot(n, v), 0.0) + 0.35 * max(dot(n, key), 0.0) + 0.12 * max(dot(n, fill), 0.0);" +
  " float s = 0.22 * pow(max(dot(n, normalize(key + v)), 0.0), 40.0);" +
  " return c * (0.22 + d) + vec3(s); }" +
  "void main() { vec3 v = normalize(-vV); vec3 c = vC;" +
  " if (uMode < 0.5) { vec3 n = normalize(vN); if (dot(n, v) < 0.0) n = -n; c = shade(n, v, vC); }" +
  " else if (uMode < 1.5) { vec2 q = 2.0 * gl_PointCoord - 1.0; float r2 = dot(q, q); if (r2 > 1.0) discard;" +
  "  c = shade(vec3(q.x, -q.y, sqrt(1.0 - r2)), vec3(0.0, 0.0, 1.0), vC); }" +
  " gl_FragColor = vec4(c, uAlpha); }";

function makeGL(version) {
  var opts = { antialias: true, preserveDrawingBuffer: true, alpha: false };
  var gl = version === 1 ? null : canvas.getContext("webgl2", opts), kind = "webgl2";
  if (!gl) { gl = canvas.getContext("webgl", opts) || canvas.getContext("experimental-webgl", opts); kind = "webgl"; }
  if (!gl) return null;
  // 32-bit indices: core in WebGL 2, an extension in WebGL 1 (16-bit indices suffice below 65536 vertices)
  var idxType = gl.UNSIGNED_INT;
  if (kind === "webgl" && !gl.getExtension("OES_element_index_uint")) {
    if (objects.some(function (o) { return o.faces && o.n > 65535; })) return null;
    idxType = gl.UNSIGNED_SHORT;
  }
  function compile(type, src) {
    var s = gl.createShader(type); gl.shaderSource(s, src); gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  }
  var prog = gl.createProgram();
  gl.attachShader(prog, compile(gl.VERTEX_SHADER, VS)); gl.attachShader(prog, compile(gl.FRAGMENT_SHADER, FS));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
  var loc = {};
  ["aPos", "aNrm", "aCol"].forEach(function (n) { loc[n] = gl.getAttribLocation(prog, n); });
  ["uMV", "uP", "uN", "uSize", "uMode", "uAlpha"].forEach(function (n) { loc[n] = gl.getUniformLocation(prog, n); });
  objects.forEach(function (o) {
    o.bPos = gl.createBuffer(); o.bNrm = gl.createBuffer(); o.bCol = gl.createBuffer();
    if (o.faces) {
      o.bIdx = gl.createBuffer(); gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, o.bIdx);
      var idx = idxType === gl.UNSIGNED_SHORT ? new Uint16Array(o.faces) : o.faces;
      gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, idx, gl.STATIC_DRAW);
    }
  });
  function attrib(name, buf, data, upload) {
    if (loc[name] < 0) return;
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    if (upload) gl.bufferData(gl.ARRAY_BUFFER, data, gl.DYNAMIC_DRAW);
    gl.enableVertexAttribArray(loc[name]); gl.vertexAttribPointer(loc[name], 3, gl.FLOAT, false, 0, 0);
  }
  function draw() {
    resize(); gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(bg[0], bg[1], bg[2], 1); gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST); gl.useProgram(prog);
    var m = matrices(), mv = m.mv;
    gl.uniformMatrix4fv(loc.uMV, false, new Float32Array(mv));
    gl.uniformMatrix4fv(loc.uP, false, new Float32Array(m.p));
    var n3 = [mv[0], mv[1], mv[2], mv[4], mv[5], mv[6], mv[8], mv[9], mv[10]];
    gl.uniformMatrix3fv(loc.uN, false, new Float32Array(n3));
    var dpr = window.devicePixelRatio || 1;
    var order = objects.filter(function (o) { return o.opacity >= 1; })
      .concat(objects.filter(function (o) { return o.opacity < 1; }));
    order.forEach(function (o) {
      var up = o.dirty; o.dirty = false;
      attrib("aPos", o.bPos, o.pos, up); attrib("aCol", o.bCol, o.col, up);
      if (o.faces) attrib("aNrm", o.bNrm, o.nrm, up);
      else if (loc.aNrm >= 0) { gl.disableVertexAttribArray(loc.aNrm); gl.vertexAttrib3f(loc.aNrm, 0, 0, 1); }
      gl.uniform1f(loc.uAlpha, o.opacity); gl.uniform1f(loc.uSize, o.size * dpr);
      if (o.opacity < 1) {
        gl.enable(gl.BLEND); gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA); gl.depthMask(false);
      } else { gl.disable(gl.BLEND); gl.depthMask(true); }
      if (o.kind === "mesh") {
        gl.uniform1f(loc.uMode, 0); gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, o.bIdx);
        gl.drawElements(gl.TRIANGLES, o.faces.length, idxType, 0);
      } else if (o.kind === "points") {
        gl.uniform1f(loc.uMode, 1); gl.drawArrays(gl.POINTS, 0, o.n);
      } else {
        gl.uniform1f(loc.uMode, 2); gl.drawArrays(gl.LINES, 0, o.n);
      }
    });
    gl.depthMask(true);
  }
  return { kind: kind, draw: draw };
}

// ---- Canvas 2D fallback (painter's algorithm, flat shading) ----
function makeCanvas2D() {
  var ctx = canvas.getContext("2d");
  if (!ctx) return null;
  function css(c, s, alpha) {
    return "rgba(" + Math.round(255 * Math.min(1, c[0] * s)) + "," + Math.round(255 * Math.min(1, c[1] * s)) + "," +
      Math.round(255 * Math.min(1, c[2] * s)) + "," + alpha + ")";
  }
  function draw() {
    resize();
    var W = canvas.width, H = canvas.height, m = matrices(), mv = m.mv, p = m.p, dpr = window.devicePixelRatio || 1;
    ctx.fillStyle = css(bg, 1, 1); ctx.fillRect(0, 0, W, H);
    var items = [];
    objects.forEach(function (o) {
      var n = o.n, sx = new Float32Array(n), sy = new Float32Array(n), vz = new Float32Array(n);
      var ex = new Float32Array(n), ey = new Float32Array(n);
      for (var i = 0; i < n; i++) {
        var x = o.pos[3 * i], y = o.pos[3 * i + 1], z = o.pos[3 * i + 2];
        var X = mv[0] * x + mv[4] * y + mv[8] * z + mv[12], Y = mv[1] * x + mv[5] * y + mv[9] * z + mv[13];
        var Z = mv[2] * x + mv[6] * y + mv[10] * z + mv[14];
        ex[i] = X; ey[i] = Y; vz[i] = Z;
        var w = -Z || 1e-9;
        sx[i] = (p[0] * X / w + 1) * 0.5 * W; sy[i] = (1 - p[5] * Y / w) * 0.5 * H;
      }
      if (o.kind === "mesh") {
        var f = o.faces;
        for (var k = 0; k < f.length; k += 3) {
          var a = f[k], b = f[k + 1], c = f[k + 2];
          var ux = ex[b] - ex[a], uy = ey[b] - ey[a], uz = vz[b] - vz[a];
          var wx = ex[c] - ex[a], wy = ey[c] - ey[a], wz = vz[c] - vz[a];
          var nx = uy * wz - uz * wy, ny = uz * wx - ux * wz, nz = ux * wy - uy * wx;
          var nn = Math.sqrt(nx * nx + ny * ny + nz * nz) || 1;
          var lit = 0.3 + 0.7 * Math.abs(nz / nn);
          var col = [0, 1, 2].map(function (j) {
            return (o.col[3 * a + j] + o.col[3 * b + j] + o.col[3 * c + j]) / 3;
          });
          items.push({ z: (vz[a] + vz[b] + vz[c]) / 3, t: 0, pts: [a, b, c], sx: sx, sy: sy,
                       fill: css(col, lit, o.opacity) });
        }
      } else if (o.kind === "points") {
        for (var q = 0; q < n; q++) {
          items.push({ z: vz[q], t: 1, x: sx[q], y: sy[q], r: 0.5 * o.size * dpr,
            fill: css([o.col[3 * q], o.col[3 * q + 1], o.col[3 * q + 2]], 1, o.opacity) });
        }
      } else {
        for (var s = 0; s + 1 < n; s += 2) {
          items.push({ z: Math.max(vz[s], vz[s + 1]), t: 2, x: sx[s], y: sy[s], x1: sx[s + 1], y1: sy[s + 1],
            fill: css([o.col[3 * s], o.col[3 * s + 1], o.col[3 * s + 2]], 1, o.opacity) });
        }
      }
    });
    items.sort(function (u, v) { return u.z - v.z; });  // far (most negative view z) first
    items.forEach(function (it) {
      ctx.fillStyle = it.fill; ctx.strokeStyle = it.fill;
      if (it.t === 0) {
        ctx.beginPath(); ctx.moveTo(it.sx[it.pts[0]], it.sy[it.pts[0]]);
        ctx.lineTo(it.sx[it.pts[1]], it.sy[it.pts[1]]); ctx.lineTo(it.sx[it.pts[2]], it.sy[it.pts[2]]);
        ctx.closePath(); ctx.fill(); ctx.lineWidth = 0.6; ctx.stroke();
      } else if (it.t === 1) {
        ctx.beginPath(); ctx.arc(it.x, it.y, Math.max(it.r, 0.75), 0, 2 * Math.PI); ctx.fill();
      } else {
        ctx.lineWidth = 1.5 * dpr; ctx.beginPath(); ctx.moveTo(it.x, it.y); ctx.lineTo(it.x1, it.y1); ctx.stroke();
      }
    });
  }
  return { kind: "canvas2d", draw: draw };
}

// ---- user interface ----
function setupColorbar() {
  var cb = D.colorbar;
  if (!cb) return;
  var el = document.getElementById("colorbar");
  el.hidden = false;
  el.querySelector(".name").textContent = cb.title;
  el.querySelector(".lo").textContent = cb.lo; el.querySelector(".hi").textContent = cb.hi;
  el.querySelector(".ramp").style.background = "linear-gradient(to right, " + cb.stops.map(function (c, i) {
    return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ") " + (100 * i / (cb.stops.length - 1)).toFixed(1) + "%";
  }).join(", ") + ")";
}

var renderer = null, pending = false;
function redraw() {
  if (pending) return;
  pending = true;
  window.requestAnimationFrame(function () { pending = false; renderer.draw(); });
}

function setupControls() {
  var drag = null;
  canvas.addEventListener("mousedown", function (e) {
    drag = { x: e.clientX, y: e.clientY, pan: e.shiftKey || e.button === 2 };
  });
  window.addEventListener("mouseup", function () { drag = null; });
  canvas.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    userMoved = true;
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y; drag.x = e.clientX; drag.y = e.clientY;
    var side = unit(cross(cam.up, cam.dir));
    if (drag.pan) {
      var k = 2 * cam.dist * Math.tan(fovy / 2) / canvas.clientHeight;
      cam.center = add(cam.center, add(scale(side, -dx * k), scale(cam.up, dy * k)));
    } else {
      cam.dir = rotate(cam.dir, cam.up, -dx * 0.01);
      side = unit(cross(cam.up, cam.dir));
      cam.dir = unit(rotate(cam.dir, side, dy * 0.01)); cam.up = unit(cross(cam.dir, side));
    }
    redraw();
  });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault(); userMoved = true; cam.dist *= Math.exp(0.001 * e.deltaY); redraw();
  }, { passive: false });
  canvas.addEventListener("dblclick", function () {
    cam = JSON.parse(JSON.stringify(cam0)); userMoved = false; redraw();
  });
  window.addEventListener("resize", redraw);
  if (T < 2) return;
  var controls = document.getElementById("controls"), slider = document.getElementById("slider");
  var play = document.getElementById("play");
  controls.hidden = false;
  var t0 = times[0], t1 = times[T - 1], playing = false, last = null, period = D.period;
  function toSlider(t) { return Math.round(1000 * (t - t0) / ((t1 - t0) || 1)); }
  slider.addEventListener("input", function () { setTime(t0 + (t1 - t0) * slider.value / 1000); redraw(); });
  function step(now) {
    if (!playing) return;
    if (last !== null) {
      var t = currentTime + (t1 - t0) * (now - last) / (1000 * period);
      if (t > t1) t = t0;
      setTime(t); slider.value = toSlider(t); renderer.draw();
    }
    last = now; window.requestAnimationFrame(step);
  }
  play.addEventListener("click", function () {
    playing = !playing; last = null;
    play.innerHTML = playing ? "&#10074;&#10074; pause" : "&#9654; play";
    if (playing) window.requestAnimationFrame(step);
  });
  slider.value = toSlider(currentTime);
}

try {
  var wanted = (window.location.hash.match(/renderer=(\w+)/) || [])[1];
  if (wanted !== "canvas2d") renderer = makeGL(wanted === "webgl" ? 1 : 2);
  if (!renderer) renderer = makeCanvas2D();
  if (!renderer) throw new Error("neither WebGL nor a 2D canvas is available");
  var asked = window.location.hash.match(/time=([-+0-9.eE]+)/);
  setTime(asked ? parseFloat(asked[1]) : D.start_time);
  setupColorbar();
  setupControls();
  renderer.draw();
  body.dataset.renderer = renderer.kind;
  if (body.dataset.status === "loading") body.dataset.status = "ok";
} catch (err) {
  fail(err && err.message ? err.message : String(err));
}
})();
"""
