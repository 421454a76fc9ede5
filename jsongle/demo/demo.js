// The jsongle demo page: join a room, see who is there, call (one call in a
// P2P room, a mesh in a MUC room), chat.
//
// Driven by its URL: ?room=<rid>&name=<dn>&token=<appToken>&auto=1&prefix=<multiRoomPrefix>.
// For tests and monitoring, document.body.dataset keeps `state` (connecting,
// joined, in-call, error), `members` (room members, this page included) and
// `peers` (peer connections in state "connected").
//
// Calls are kept per remote member (`calls`, keyed by uid) and addressed with
// `addressOf(uid)`. In a MUC room that makes a mesh (PROTOCOL.md §14): one
// RTCPeerConnection per other member, every call message to "<rid>/<uid>",
// the newcomer calling each member already there.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);

  function randomId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  const me = { uid: randomId(), dn: params.get("name") || "guest-" + randomId().slice(0, 4) };
  const room = { rid: params.get("room") || "", muc: false, joined: false, members: new Map() };
  const auto = params.get("auto") === "1";
  const server = { id: null, iceServers: [], prefix: params.get("prefix") || "#muc#" };
  const calls = new Map(); // remote uid -> call
  const pendingTexts = new Map(); // message id -> <li>
  let helloTransaction = null;
  let joinTransaction = null;
  let localStream = null;
  let localMedia = null; // the one getUserMedia of the page, shared by its calls
  let fatal = false;

  // ------------------------------------------------------------------ view

  function note(text) {
    const item = document.createElement("li");
    item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    $("events").prepend(item);
  }

  function showError(text, isFatal = false) {
    $("error").textContent = text;
    $("error").hidden = false;
    note(`error: ${text}`);
    if (isFatal) fatal = true;
    render();
  }

  function render() {
    const connected = [...calls.values()].filter((c) => c.pc && c.pc.connectionState === "connected");
    const inCall = [...calls.values()].some((c) => c.active);
    const state = fatal ? "error" : !room.joined ? "connecting" : inCall ? "in-call" : "joined";
    Object.assign(document.body.dataset, {
      state,
      members: String(room.joined ? room.members.size + 1 : 0),
      peers: String(connected.length),
    });
    const list = $("members");
    list.replaceChildren();
    const mine = document.createElement("li");
    mine.className = "me";
    mine.textContent = `${me.dn} (you)`;
    if (room.joined) list.append(mine);
    for (const [uid, member] of room.members) {
      const item = document.createElement("li");
      const call = calls.get(uid);
      item.textContent = (member.dn || uid) + (call ? ` — ${call.status}` : "");
      list.append(item);
    }
    const other = [...room.members.keys()].find((uid) => !calls.has(uid));
    $("call").disabled = !room.joined || !other;
    $("hangup").disabled = calls.size === 0;
    $("mute").disabled = $("camera").disabled = !localStream;
    $("text").disabled = $("say").querySelector("button").disabled = !room.joined;
  }

  // ------------------------------------------------------------- signaling

  function send(to, jsongle) {
    const message = { id: randomId(), from: me.uid, to, jsongle };
    socket.emit("jsongle", message);
    return message;
  }

  function addressOf(uid) {
    // A P2P room has one other member; in a MUC room each peer is addressed alone.
    return room.muc ? `${room.rid}/${uid}` : room.rid;
  }

  let socket = null;

  // Connects once there is a room to join (the form gives one otherwise).
  function start() {
    socket = io({ auth: { appToken: params.get("token") || "", resume: true } });
    socket.on("connect", () => {
      const transport = socket.io.engine.transport.name;
      $("connection").textContent = `connected (${transport})${socket.recovered ? ", session resumed" : ""}`;
      note(`connected over ${transport}`);
      // A resumed session kept its rooms; otherwise a new hello comes and we join again.
      if (socket.recovered && joinTransaction) {
        room.joined = true;
        render();
      }
      socket.io.engine.once("upgrade", (t) => ($("connection").textContent = `connected (${t.name})`));
    });
    socket.on("disconnect", (reason) => {
      // After a server's DISCONNECT (a restart, a kick) socket.io-client leaves reconnecting to us.
      const again = reason === "io server disconnect";
      if (again) setTimeout(() => socket.connect(), 1000);
      $("connection").textContent = `disconnected: ${reason}${socket.active || again ? ", reconnecting…" : ""}`;
      note(`disconnected: ${reason}`);
      room.joined = false;
      render();
    });
    socket.on("connect_error", (error) => {
      $("connection").textContent = `cannot connect: ${error.message}`;
      if (!socket.active) showError(`the server refused the connection: ${error.message}`, true);
    });

    socket.on("jsongle", (message) => {
      const j = message && message.jsongle;
      if (!j) return;
      Promise.resolve()
        .then(() => handle(message, j))
        .catch((error) => showError(`could not handle ${j.action}: ${error.message}`));
    });
  }

  function handle(message, j) {
    switch (j.action) {
      case "iq-get":
        if (j.query === "session-hello") return hello(message, j);
        return;
      case "ack":
        if (j.transaction === helloTransaction) {
          if (j.status === "success") return join();
          return showError("the server did not accept our hello", true);
        }
        return;
      case "iq-result":
        if (j.transaction === joinTransaction) return joined(j.description || {});
        return;
      case "iq-error": {
        const d = j.description || {};
        return showError(`${j.query} refused: ${d.errorDetails} (${d.errorCode})`, j.transaction === joinTransaction);
      }
      case "session-error": {
        const d = j.description || {};
        return showError(`${d.errorDetails} (${d.errorCode})`);
      }
      case "session-event":
        return roomEvent(j);
      case "session-text":
        return received(message, j);
      default:
        if (j.sid) return callMessage(j);
    }
  }

  function hello(message, j) {
    const d = j.description || {};
    server.id = message.from;
    server.iceServers = Array.isArray(d.iceServers) ? d.iceServers : [];
    if (d.multiRoomPrefix) server.prefix = d.multiRoomPrefix;
    note(`hello from ${d.sn || message.from} ${d.version || ""}`);
    helloTransaction = j.transaction;
    send(server.id, { action: "iq-result", query: "session-hello", transaction: j.transaction, description: { uid: me.uid, dn: me.dn } });
  }

  function join() {
    room.muc = room.rid.startsWith(server.prefix);
    joinTransaction = randomId();
    note(`joining ${room.muc ? "MUC" : "P2P"} room ${room.rid}`);
    send(server.id, { action: "iq-set", query: room.muc ? "muc-join" : "session-join", transaction: joinTransaction, description: { rid: room.rid } });
  }

  function joined(d) {
    room.joined = true;
    room.members = new Map((d.members || []).map((m) => [m.uid, m]));
    note(`joined ${room.rid} with ${room.members.size} other member(s)`);
    render();
    // The newcomer calls: the one other member of a P2P room, each member of a MUC room.
    if (auto) callOthers();
  }

  function roomEvent(j) {
    const d = j.description || {};
    if (j.event === "ack") {
      const item = pendingTexts.get(d.mid);
      if (item) item.querySelector(".ack").textContent = " ✓ received by the server";
      return pendingTexts.delete(d.mid);
    }
    const member = d.member || {};
    if (j.event === "joined" && member.uid) {
      room.members.set(member.uid, member);
      note(`${member.dn || member.uid} joined`);
    } else if (j.event === "left" && member.uid) {
      room.members.delete(member.uid);
      note(`${member.dn || member.uid} left`);
      endCall(member.uid, "they left the room");
    }
    render();
  }

  // ------------------------------------------------------------------ chat

  $("say").addEventListener("submit", (event) => {
    event.preventDefault();
    const content = $("text").value.trim();
    if (!content || !room.joined) return;
    const message = send(room.rid, { action: "session-text", namespace: room.muc ? "muc" : "room", description: { content } });
    pendingTexts.set(message.id, chatLine(me.dn, content, " sending…"));
    $("text").value = "";
  });

  function received(message, j) {
    const d = j.description || {};
    const from = String(message.from || "");
    const uid = room.muc && from.startsWith(room.rid + "/") ? from.slice(room.rid.length + 1) : [...room.members.keys()][0];
    const member = room.members.get(uid);
    chatLine(member ? member.dn || uid : "someone", String(d.content ?? ""), "");
  }

  function chatLine(who, text, ack) {
    const item = document.createElement("li");
    const name = document.createElement("b");
    name.textContent = `${who}: `;
    const status = document.createElement("span");
    status.className = "ack";
    status.textContent = ack;
    item.append(name, text, status);
    $("messages").append(item);
    return item;
  }

  // ----------------------------------------------------------------- calls

  function newCall(uid, sid, initiator) {
    const call = { uid, sid, initiator, pc: null, active: false, candidates: [], status: "calling", tile: null };
    calls.set(uid, call);
    render();
    return call;
  }

  function callSend(call, action, description = {}) {
    const [initiator, responder] = call.initiator ? [me.uid, call.uid] : [call.uid, me.uid];
    send(addressOf(call.uid), { action, sid: call.sid, initiator, responder, namespace: room.muc ? "muc" : "room", description });
  }

  function setStatus(call, status) {
    call.status = status;
    if (call.tile) call.tile.querySelector("p").textContent = `${nameOf(call.uid)}: ${status}`;
    render();
  }

  const nameOf = (uid) => (room.members.get(uid) || {}).dn || uid;
  const now = () => new Date().toISOString();

  function media() {
    // Calls that start together wait for the same camera (and one "you" tile).
    if (!localMedia) localMedia = openMedia();
    return localMedia;
  }

  async function openMedia() {
    try {
      localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
      const tile = addTile("you", true);
      tile.querySelector("video").srcObject = localStream;
    } catch (error) {
      const why = window.isSecureContext ? error.message : "the camera needs https or localhost";
      showError(`no camera or microphone (${why}): receiving only`);
    }
    render();
    return localStream;
  }

  function addTile(label, local) {
    const tile = document.createElement("figure");
    tile.className = "tile";
    tile.innerHTML = "<video autoplay playsinline></video><p></p>";
    tile.querySelector("video").muted = local;
    tile.querySelector("video").classList.add(local ? "local" : "remote");
    tile.querySelector("p").textContent = label;
    if (local) $("tiles").prepend(tile);
    else $("tiles").append(tile);
    return tile;
  }

  function callOthers() {
    const others = [...room.members.keys()].filter((uid) => !calls.has(uid));
    for (const uid of room.muc ? others : others.slice(0, 1)) startCall(uid);
  }

  async function startCall(uid) {
    if (calls.has(uid)) return;
    const call = newCall(uid, randomId(), true);
    note(`calling ${nameOf(uid)}`);
    callSend(call, "session-propose", { initiated: now(), media: "video" });
  }

  async function connect(call) {
    const pc = new RTCPeerConnection(server.iceServers.length ? { iceServers: server.iceServers } : {});
    call.pc = pc;
    call.tile = addTile(nameOf(call.uid), false);
    call.tile.dataset.uid = call.uid;
    const stream = await media();
    if (stream) for (const track of stream.getTracks()) pc.addTrack(track, stream);
    else for (const kind of ["audio", "video"]) pc.addTransceiver(kind, { direction: "recvonly" });
    pc.onicecandidate = ({ candidate }) => candidate && callSend(call, "transport-info", { establishing: now(), candidate: candidate.toJSON() });
    pc.ontrack = ({ streams, track }) => (call.tile.querySelector("video").srcObject = streams[0] || new MediaStream([track]));
    pc.oniceconnectionstatechange = () => note(`ICE with ${nameOf(call.uid)}: ${pc.iceConnectionState}`);
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (state === "connected") call.active = true;
      setStatus(call, { connected: "in call", connecting: "connecting media…", disconnected: "media interrupted, waiting…", failed: "media failed" }[state] || state);
      if (state === "failed") {
        send(room.rid, { action: "session-metrics", namespace: "room", description: { error: "ice-failed" } });
        hangUp(call.uid, "no media path between you (ICE failed; a TURN server may be needed)");
      }
    };
    return pc;
  }

  async function addCandidates(call) {
    for (const candidate of call.candidates.splice(0)) await call.pc.addIceCandidate(candidate);
  }

  async function callMessage(j) {
    const uid = j.initiator === me.uid ? j.responder : j.initiator;
    let call = calls.get(uid);
    if (j.action === "session-propose") {
      // Both called at once: the call of the lower uid goes on, the other side declines ours.
      if (call && call.initiator && !call.pc && uid < me.uid) {
        endCall(uid, "they called at the same time");
        call = undefined;
      }
      if (call) return callSend({ ...call, sid: j.sid, initiator: false }, "session-decline", { ended: now(), reason: "busy" });
      call = newCall(uid, j.sid, false);
      setStatus(call, "ringing");
      return auto ? accept(call) : showRinging();
    }
    if (!call || call.sid !== j.sid) {
      if (j.action === "session-info" && j.reason === "unreachable" && call) return endCall(uid, "unreachable");
      return;
    }
    const d = j.description || {};
    switch (j.action) {
      case "session-info":
        if (j.reason === "unreachable") return endCall(uid, "they cannot be reached");
        if (j.reason === "trying") return setStatus(call, "ringing…");
        return;
      case "session-proceed": {
        setStatus(call, "accepted, connecting…");
        const pc = await connect(call);
        await pc.setLocalDescription(await pc.createOffer());
        return callSend(call, "session-initiate", { offering: now(), offer: pc.localDescription.toJSON() });
      }
      case "session-initiate": {
        const pc = await connect(call);
        await pc.setRemoteDescription(d.offer);
        await addCandidates(call);
        await pc.setLocalDescription(await pc.createAnswer());
        return callSend(call, "session-accept", { offered: now(), answer: pc.localDescription.toJSON() });
      }
      case "session-accept":
        await call.pc.setRemoteDescription(d.answer);
        return addCandidates(call);
      case "transport-info":
        call.candidates.push(d.candidate);
        if (call.pc && call.pc.remoteDescription) await addCandidates(call);
        return;
      case "session-terminate":
        return endCall(uid, "they hung up");
      case "session-decline":
        return endCall(uid, "they declined");
      case "session-retract":
        return endCall(uid, "they cancelled the call");
    }
  }

  function accept(call) {
    setStatus(call, "accepted, connecting…");
    callSend(call, "session-proceed", { proceeded: now() });
    showRinging();
  }

  // Calls proposed to us that wait for Accept/Decline (in a MUC room, maybe several).
  const ringing = () => [...calls.values()].filter((c) => c.status === "ringing");

  function showRinging() {
    const names = ringing().map((c) => nameOf(c.uid));
    $("incoming-text").textContent = `${names.join(" and ")} ${names.length > 1 ? "are" : "is"} calling`;
    $("incoming").hidden = names.length === 0;
  }

  function hangUp(uid, why) {
    const call = calls.get(uid);
    if (!call) return;
    const action = call.pc ? "session-terminate" : call.initiator ? "session-retract" : "session-decline";
    callSend(call, action, { ended: now() });
    endCall(uid, why);
  }

  function endCall(uid, why) {
    const call = calls.get(uid);
    if (!call) return;
    calls.delete(uid);
    if (call.pc) call.pc.close();
    if (call.tile) call.tile.remove();
    showRinging();
    note(`call with ${nameOf(uid)} ended: ${why}`);
    render();
  }

  // -------------------------------------------------------------- controls

  $("call").addEventListener("click", callOthers);
  $("hangup").addEventListener("click", () => [...calls.keys()].forEach((uid) => hangUp(uid, "you hung up")));
  $("accept").addEventListener("click", () => ringing().forEach(accept));
  $("decline").addEventListener("click", () => ringing().forEach((c) => hangUp(c.uid, "you declined")));
  $("mute").addEventListener("click", () => {
    const tracks = localStream.getAudioTracks();
    tracks.forEach((t) => (t.enabled = !t.enabled));
    $("mute").textContent = tracks.some((t) => t.enabled) ? "Mute" : "Unmute";
  });
  $("camera").addEventListener("click", () => {
    const tracks = localStream.getVideoTracks();
    tracks.forEach((t) => (t.enabled = !t.enabled));
    $("camera").textContent = tracks.some((t) => t.enabled) ? "Camera off" : "Camera on";
  });
  window.addEventListener("pagehide", () => [...calls.keys()].forEach((uid) => hangUp(uid, "page closed")));

  // For tests and monitoring: video frames decoded so far, per remote member (getStats).
  window.framesDecoded = async () => {
    const frames = {};
    for (const [uid, call] of calls) {
      if (!call.pc) continue;
      (await call.pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") frames[uid] = s.framesDecoded || 0;
      });
    }
    return frames;
  };

  $("room").value = room.rid;
  $("name").value = params.get("name") || "";
  $("auto").checked = auto;
  $("token").value = params.get("token") || "";
  $("join").addEventListener("submit", () => {
    if (!$("token").value) $("token").disabled = true; // no empty token= in the URL
  });
  render();
  if (room.rid) start();
  else $("connection").textContent = "not connected: choose a room above";
})();
