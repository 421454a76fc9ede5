// A test client that speaks to the server as the JSONgle client library does.
//
// Written for these tests from the library's documented behaviour (the
// public oanguenot/JSONgle repository, which is not on npm): the same
// message shapes out, the same expectations in.  What it reproduces:
//
// - the transport: every message is the Socket.IO event "jsongle"; the
//   library stamps `from` on everything it sends with its own connection
//   id, learnt from the `to` of the server's session-hello iq-get;
// - queries: iq-set / iq-result carry {id, to, jsongle: {action, query,
//   transaction, description}} and resolve on the answer (iq-result,
//   iq-error or ack) with the same transaction;
// - calls: {id, from, to, namespace: "call", jsongle: {sid, action, reason,
//   initiator, responder, description}} where `reason` is "" except for
//   session-info ("ringing", "active", "mute", "unmute"), and each
//   description holds the date of its step (initiated+media, rang,
//   proceeded, offering+offer, offered+answer, establishing+candidate,
//   actived, muted/unmuted+media, ended).  A callee answers a propose with
//   ringing by itself; the caller and callee are the `from` and `to` of the
//   propose as received, so the callee writes to the room;
// - messages: session-text and session-custom {id, to, jsongle: {action,
//   namespace, description: {sent, content[, additionalContent]}}};
//   session-event {event: ack|typing|reaction, namespace, description};
//   session-metrics {sid, namespace: "call", description: {..., issuedAt}};
// - on every session-text or session-custom received, an automatic
//   `received` ack to the bare sender (the part of `from` before "/"),
//   in namespace "muc" when `from` had a "/", else "message".

(function () {
  "use strict";

  const now = () => new Date().toJSON();
  const newId = () => crypto.randomUUID();

  class JsongleLike {
    constructor(socket) {
      this.socket = socket;
      this.from = null;           // our connection id, from the hello
      this.serverId = null;
      this.received = [];         // every jsongle message received, as received
      this.sent = [];             // every message sent, as sent
      this.call = null;           // {sid, caller, callee, direction, state, endedReason}
      this.pending = new Map();   // transaction -> resolve
      this.handlers = {};         // onrequest, oncall, onofferneeded, onoffer, oncandidate, oncallended, onevent, onmessage, oninfo
      socket.on("jsongle", (message) => this._in(message));
    }

    _out(message) {
      const complete = { ...message, from: this.from };
      this.sent.push(complete);
      this.socket.emit("jsongle", complete);
      return complete;
    }

    _fire(name, ...args) {
      const handler = this.handlers[name];
      if (handler) handler(...args);
    }

    // ---------------------------------------------------------- receiving

    _in(message) {
      this.received.push(message);
      const jsongle = message.jsongle;
      if (!jsongle) return;
      const { action } = jsongle;
      if (action === "iq-get" || action === "iq-set") {
        if (action === "iq-get" && jsongle.query === "session-hello") {
          this.from = message.to;
          this.serverId = message.from;
        }
        this._fire("onrequest", jsongle, message.from);
      } else if (action === "iq-result" || action === "iq-error" || action === "ack") {
        const resolve = this.pending.get(jsongle.transaction);
        if (resolve) {
          this.pending.delete(jsongle.transaction);
          resolve(jsongle);
        }
      } else if (action === "session-text" || action === "session-custom") {
        const bare = message.from.split("/")[0];
        const namespace = message.from.includes("/") ? "muc" : "message";
        this._out(this._event(bare, "ack", namespace, { acknowledged: now(), mid: message.id, type: "received" }));
        this._fire("onmessage", jsongle, message.from, message.id);
      } else if (action === "session-event") {
        this._fire("onevent", jsongle, message.from);
      } else if (action === "session-error") {
        this._fire("onerror", jsongle, message.from);
      } else {
        this._callMessage(message);
      }
    }

    _callMessage(message) {
      const { action, reason, description } = message.jsongle;
      if (action === "session-propose") {
        this.call = {
          sid: message.jsongle.sid, caller: message.from, callee: message.to,
          direction: "incoming", media: description.media, state: "ringing", endedReason: "",
        };
        this._callOut("session-info", "ringing", { rang: now() });
        this._fire("oncall", this.call);
        return;
      }
      if (!this.call || message.jsongle.sid !== this.call.sid) {
        if (action === "session-info" && reason === "unreachable") this._fire("oninfo", message.jsongle);
        return;
      }
      if (action === "session-info") {
        if (reason === "trying") this.call.state = "trying";
        else if (reason === "ringing") this.call.state = "ringing";
        else if (reason === "active") this.call.state = "active";
        else if (reason === "unreachable") this._ended("aborted");
        this._fire("oninfo", message.jsongle);
      } else if (action === "session-proceed") {
        this.call.state = "proceeded";
        this._fire("onofferneeded", this.call);
      } else if (action === "session-initiate") {
        this.call.state = "offering";
        this._fire("onoffer", description.offer);
      } else if (action === "session-accept") {
        this._fire("onoffer", description.answer);
      } else if (action === "transport-info") {
        this._fire("oncandidate", description.candidate);
      } else if (action === "session-decline") {
        this._ended("declined");
      } else if (action === "session-retract") {
        this._ended("retracted");
      } else if (action === "session-terminate") {
        this._ended("terminated");
      }
    }

    _ended(reason) {
      const call = this.call;
      call.state = "ended";
      call.endedReason = reason;
      this.call = null;
      this._fire("oncallended", call, false);
    }

    // ------------------------------------------------------------ building

    _event(to, event, namespace, description) {
      return { id: newId(), to, jsongle: { action: "session-event", event, namespace, description } };
    }

    _callOut(action, reason, description) {
      const call = this.call;
      const outgoing = call.direction === "outgoing";
      return this._out({
        id: newId(),
        from: outgoing ? call.caller : call.callee,
        to: outgoing ? call.callee : call.caller,
        namespace: "call",
        jsongle: { sid: call.sid, action, reason, initiator: call.caller, responder: call.callee, description },
      });
    }

    // ------------------------------------------------------------- queries

    _query(action, query, to, description, transaction) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(transaction);
          reject(new Error(`${query}: no answer`));
        }, 5000);
        this.pending.set(transaction, (jsongle) => {
          clearTimeout(timer);
          if (jsongle.action === "iq-error") reject(jsongle);
          else resolve(jsongle);
        });
        this._out({ id: newId(), to, jsongle: { action, query, transaction, description } });
      });
    }

    request(to, query, content) {
      return this._query("iq-set", query, to, content, newId());
    }

    answer(to, query, content, transaction) {
      return this._query("iq-result", query, to, content, transaction);
    }

    // --------------------------------------------------------------- calls

    callTo(to, media) {
      this.call = {
        sid: newId(), caller: this.from, callee: to, direction: "outgoing", media, state: "new", endedReason: "",
      };
      this._callOut("session-propose", "", { initiated: now(), media });
    }

    proceed() {
      this.call.state = "proceeded";
      this._callOut("session-proceed", "", { proceeded: now() });
    }

    decline() {
      const call = this.call;
      this._callOut("session-decline", "", { ended: now() });
      call.state = "ended";
      call.endedReason = "declined";
      this.call = null;
      this._fire("oncallended", call, true);
    }

    sendOffer(description) {
      const plain = { type: description.type, sdp: description.sdp };
      if (plain.type === "offer") {
        this.call.state = "offering";
        this._callOut("session-initiate", "", { offering: now(), offer: plain });
      } else {
        this._callOut("session-accept", "", { offered: now(), answer: plain });
      }
    }

    sendCandidate(candidate) {
      this._callOut("transport-info", "", { establishing: now(), candidate });
    }

    setAsActive() {
      this.call.state = "active";
      this._callOut("session-info", "active", { actived: now() });
    }

    mute(media) {
      this._callOut("session-info", "mute", { muted: now(), media });
    }

    unmute(media) {
      this._callOut("session-info", "unmute", { unmuted: now(), media });
    }

    end() {
      const call = this.call;
      const inProgress = call.state !== "active";
      this._callOut(inProgress ? "session-retract" : "session-terminate", "", { ended: now() });
      call.state = "ended";
      call.endedReason = inProgress ? "retracted" : "terminated";
      this.call = null;
      this._fire("oncallended", call, true);
    }

    reportMetrics(sid, metrics, to) {
      const description = { ...metrics, issuedAt: now() };
      this._out({ id: newId(), to, jsongle: { sid, action: "session-metrics", namespace: "call", description } });
    }

    // ------------------------------------------------------------ messages

    _message(action, to, namespace, description) {
      return this._out({ id: newId(), to, jsongle: { action, namespace, description } }).id;
    }

    send(to, content, additionalContent) {
      return this._message("session-text", to, "message", { sent: now(), content: content || "", additionalContent: additionalContent || null });
    }

    sendMuc(to, content, additionalContent) {
      return this._message("session-text", to, "muc", { sent: now(), content: content || "", additionalContent: additionalContent || null });
    }

    sendJSON(to, content) {
      return this._message("session-custom", to, "message", { sent: now(), content });
    }

    sendJSONMUC(to, content) {
      return this._message("session-custom", to, "muc", { sent: now(), content });
    }

    isTyping(state, to, namespace = "message") {
      this._out(this._event(to, "typing", namespace, { state: state ? "composing" : "active", updated: now() }));
    }

    reactToMessage(id, reaction, to, namespace = "message") {
      this._out(this._event(to, "reaction", namespace, { reacted: now(), mid: id, type: reaction || "" }));
    }

    sendAReadAcknowledgement(id, to, namespace = "message") {
      this._out(this._event(to, "ack", namespace, { acknowledged: now(), mid: id, type: "read" }));
    }
  }

  window.JsongleLike = JsongleLike;
})();
