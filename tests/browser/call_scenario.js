// Two people using an app built on the JSONgle client library: Bob waits in
// a P2P room and a MUC room; Alice joins both, calls Bob (declined), calls
// again (a real video call over RTCPeerConnection with the fake camera),
// hangs up once video frames are decoded on both sides, then chats in both
// rooms and leaves.  Each page writes what it saw to window.__result; the
// Python test asserts on it.
//
// Query parameters: role (alice|bob), server, token, p2p, muc.

(function () {
  "use strict";

  const params = new URLSearchParams(location.search);
  const role = params.get("role");
  const P2P = params.get("p2p");
  const MUC = params.get("muc");
  const HELLO = {
    alice: { uid: "alice", dn: "Alice", avatar: "https://pictures.example/alice.png", extra: { team: "blue", level: 3 } },
    bob: { uid: "bob", dn: "Bob", avatar: "https://pictures.example/bob.png" },
  };

  const out = { role, steps: [], events: [], infos: [], messages: [], calls: [] };
  window.__result = out;
  const step = (name) => { out.steps.push(name); console.log(`${role}: ${name}`); };
  const fail = (error) => {
    out.error = String((error && error.stack) || JSON.stringify(error));
    console.error(`${role}: ${out.error}`);
    window.__done = true;
  };

  function until(predicate, label, timeout = 20000) {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const poll = () => {
        let value;
        try { value = predicate(); } catch (error) { reject(error); return; }
        if (value) resolve(value);
        else if (Date.now() - started > timeout) reject(new Error(`${role}: timed out waiting for ${label}`));
        else setTimeout(poll, 50);
      };
      poll();
    });
  }

  const socket = io(params.get("server"), { auth: { appToken: params.get("token") }, reconnection: false });
  const client = new window.JsongleLike(socket);
  out.received = client.received;
  out.sent = client.sent;
  socket.on("connect_error", (error) => fail(new Error(`connect_error: ${error.message}`)));

  // -- the media side: one RTCPeerConnection per call ------------------------

  const isLoopback = (candidate) => / 127\.0\.0\.1 /.test(candidate.candidate);
  let pc = null;
  let early = [];  // candidates that came before the remote description

  async function openPeer() {
    pc = new RTCPeerConnection({ iceServers: [] });
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
    stream.getTracks().forEach((track) => pc.addTrack(track, stream));
    pc.onicecandidate = (event) => {
      // Only loopback candidates leave the page: the call stays on 127.0.0.1.
      if (event.candidate && event.candidate.candidate && isLoopback(event.candidate) && client.call) {
        client.sendCandidate(event.candidate.toJSON());
      }
    };
    pc.onconnectionstatechange = () => step(`pc ${pc.connectionState}`);
  }

  async function remoteDescription(description) {
    await pc.setRemoteDescription(description);
    for (const candidate of early) await pc.addIceCandidate(candidate);
    early = [];
  }

  client.handlers.oncandidate = (candidate) => {
    if (pc && pc.remoteDescription) pc.addIceCandidate(candidate).catch(fail);
    else early.push(candidate);
  };

  async function videoFlows() {
    let frames = 0;
    let pair = null;
    for (let i = 0; i < 300 && frames === 0; i += 1) {
      const stats = await pc.getStats();
      stats.forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "video") frames = report.framesDecoded || 0;
        if (report.type === "candidate-pair" && report.nominated && report.state === "succeeded") {
          const local = stats.get(report.localCandidateId);
          const remote = stats.get(report.remoteCandidateId);
          pair = {
            local: local && local.address, localType: local && local.candidateType,
            remote: remote && remote.address, remoteType: remote && remote.candidateType,
          };
        }
      });
      if (frames === 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return { framesDecoded: frames, pair };
  }

  function closePeer() {
    if (pc) {
      pc.getSenders().forEach((sender) => sender.track && sender.track.stop());
      pc.close();
      pc = null;
    }
  }

  client.handlers.oninfo = (jsongle) => out.infos.push({ sid: jsongle.sid, reason: jsongle.reason, description: jsongle.description });
  client.handlers.onevent = (jsongle, from) => out.events.push({ from, event: jsongle.event, namespace: jsongle.namespace, description: jsongle.description });
  client.handlers.oncallended = (call, local) => out.calls.push({ sid: call.sid, endedReason: call.endedReason, local });

  // -- the session: hello, then the rooms -----------------------------------

  const hello = new Promise((resolve) => {
    client.handlers.onrequest = (jsongle, from) => {
      if (jsongle.query !== "session-hello") return;
      out.hello = { request: jsongle, from };
      client.answer(from, "session-hello", HELLO[role], jsongle.transaction).then((ack) => {
        out.helloAck = ack;
        resolve();
      }, fail);
    };
  });

  async function join() {
    await hello;
    step("hello");
    out.p2pJoin = await client.request(client.serverId, "session-join", { rid: P2P });
    out.mucJoin = await client.request(client.serverId, "muc-join", { rid: MUC });
    step("joined");
  }

  // -- Bob: answers the calls and the messages ------------------------------

  async function bob() {
    let incoming = 0;
    client.handlers.oncall = (call) => {
      incoming += 1;
      step(`call ${incoming} ringing`);
      if (incoming === 1) {
        client.decline();
      } else {
        client.proceed();
      }
    };
    client.handlers.onoffer = async (offer) => {
      try {
        await openPeer();
        await remoteDescription(offer);
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        client.sendOffer(answer);
        step("answered");
        out.media = await videoFlows();
        step(`frames ${out.media.framesDecoded}`);
        client.setAsActive();
        client.mute("audio");
        client.unmute("audio");
      } catch (error) { fail(error); }
    };
    client.handlers.onmessage = (jsongle, from, id) => {
      out.messages.push({ from, id, action: jsongle.action, namespace: jsongle.namespace, description: jsongle.description });
      const room = from.split("/")[0];
      if (jsongle.action === "session-text" && jsongle.namespace === "message") {
        client.reactToMessage(id, "\u2764\ufe0f", room);
        client.sendAReadAcknowledgement(id, room);
      } else if (jsongle.action === "session-text" && jsongle.namespace === "muc") {
        client.isTyping(true, room, "muc");
        client.reactToMessage(id, "\ud83d\udc4d", room, "muc");
        client.sendAReadAcknowledgement(id, room, "muc");
      } else if (jsongle.action === "session-custom") {
        client.isTyping(false, room, jsongle.namespace);
      }
    };
    await join();
    window.__ready = true;
    await until(() => out.calls.some((c) => c.endedReason === "terminated"), "the call's end");
    closePeer();
    step("call ended");
    await until(() => out.events.filter((e) => e.event === "left").length === 2, "Alice leaving both rooms");
    step("done");
    window.__done = true;
  }

  // -- Alice: calls, chats, leaves --------------------------------------------

  async function alice() {
    await join();
    // A declined call.
    client.callTo(P2P, "video");
    const declined = client.call.sid;
    await until(() => out.calls.some((c) => c.sid === declined), "the decline");
    step("call 1 declined");

    // A real call.
    client.handlers.onofferneeded = async () => {
      try {
        await openPeer();
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        client.sendOffer(offer);
        step("offered");
      } catch (error) { fail(error); }
    };
    client.handlers.onoffer = (answer) => remoteDescription(answer).catch(fail);
    client.callTo(P2P, "video");
    const sid = client.call.sid;
    await until(() => pc && pc.connectionState === "connected", "the peer connection");
    out.media = await videoFlows();
    step(`frames ${out.media.framesDecoded}`);
    client.setAsActive();
    await until(() => ["active", "mute", "unmute"].every((r) => out.infos.some((i) => i.sid === sid && i.reason === r)),
      "Bob's active, mute and unmute");
    client.reportMetrics(sid, { mos: 4.4, duration: 7, ua: "jsongle-like", route: "host" }, P2P);
    client.end();
    closePeer();
    step("call 2 ended");

    // Messages in both rooms.
    out.ids = {
      text: client.send(P2P, "hello Bob", { file: { name: "notes.txt", size: 3 } }),
      custom: client.sendJSON(P2P, { kind: "whiteboard", strokes: [[1, 2], [3, 4]] }),
      mucText: client.sendMuc(MUC, "hello room", { mention: "bob" }),
      mucCustom: client.sendJSONMUC(MUC, { poll: "lunch?" }),
    };
    client.isTyping(true, P2P);
    const acked = (mid, type) => out.events.some((e) => e.event === "ack" && e.description.mid === mid && e.description.type === type);
    await until(() => Object.values(out.ids).every((mid) => acked(mid, "server-received") && acked(mid, "received")),
      "the server's and Bob's acks");
    await until(() => out.events.filter((e) => e.event === "reaction").length === 2 && acked(out.ids.text, "read")
      && acked(out.ids.mucText, "read") && out.events.filter((e) => e.event === "typing").length === 3, "Bob's reactions");
    step("messages");
    out.leaves = [
      await client.request(client.serverId, "session-leave", { rid: P2P }),
      await client.request(client.serverId, "session-leave", { rid: MUC }),
    ];
    step("done");
    window.__done = true;
  }

  (role === "bob" ? bob() : alice()).catch(fail);
})();
