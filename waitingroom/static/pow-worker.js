// Proof of work for joining (see waitingroom/pow.py): find n so that SHA-256(challenge + ":" + n)
// starts with `difficulty` zero bits. Runs in a Web Worker; posts n back when found.
self.onmessage = async function (event) {
  var challenge = event.data.challenge, bits = event.data.difficulty, encoder = new TextEncoder();
  function zeros(d) {
    var z = 0;
    for (var i = 0; i < d.length; i++) {
      if (d[i] === 0) { z += 8; continue; }
      return z + Math.clz32(d[i]) - 24;
    }
    return z;
  }
  for (var n = 0; ; n++) {
    var digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(challenge + ":" + n)));
    if (zeros(digest) >= bits) { self.postMessage(String(n)); return; }
  }
};
