#!/usr/bin/env node
// start.js - run a local S3 server (@20minutes/s3rver 5.0.0) for tierckpt's tests and demo.
//
//   node --openssl-legacy-provider start.js [--port N] <datadir> [bucket...]
//
// Listens on 127.0.0.1 only.  Port: --port N, else $S3RVER_PORT, else 0 (the kernel picks a free
// one, so parallel test runs never collide).  <datadir> holds the objects (created if missing;
// kept after exit, so pass a scratch directory).  Each bucket named is created if absent.
// When the server is listening, stdout gets exactly one line, "READY <port>", and nothing else
// ever (S3rver runs silent; our own diagnostics go to stderr), so a test can read one line and
// connect.  SIGTERM/SIGINT close the listener and all connections and exit 0.
//
// Credentials are S3rver's built-in pair: access key "S3RVER", secret "S3RVER" (any region).
// Signatures are verified.  Requests must be path-style (http://127.0.0.1:PORT/bucket/key).
// Under Node < 24 start it with --openssl-legacy-provider: S3rver encrypts the continuation
// token of truncated listings with DES, which OpenSSL 3 only has in the legacy provider.
'use strict'

const fs = require('node:fs')
const path = require('node:path')
const S3rver = require('@20minutes/s3rver')

function usage(msg) {
  if (msg) process.stderr.write(`s3rver: ${msg}\n`)
  process.stderr.write('usage: start.js [--port N] <datadir> [bucket...]\n')
  process.exit(2)
}

function parsePort(s, what) {
  if (!/^[0-9]+$/.test(s) || Number(s) > 65535) usage(`${what} must be a port number 0..65535`)
  return Number(s)
}

const args = process.argv.slice(2)
let port = process.env.S3RVER_PORT ? parsePort(process.env.S3RVER_PORT, 'S3RVER_PORT') : 0
const positional = []
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port') {
    if (i + 1 >= args.length) usage('--port needs a value')
    port = parsePort(args[++i], '--port')
  } else if (args[i].startsWith('--port=')) {
    port = parsePort(args[i].slice(7), '--port')
  } else if (args[i] === '-h' || args[i] === '--help') {
    usage()
  } else {
    positional.push(args[i])
  }
}
if (positional.length < 1) usage('no data directory')
const directory = path.resolve(positional[0])
const buckets = positional.slice(1)
fs.mkdirSync(directory, { recursive: true })

const server = new S3rver({
  address: '127.0.0.1',
  port,
  silent: true,
  directory,
  configureBuckets: buckets.map((name) => ({ name })),
})

// S3rver's listen() reports bind errors (EADDRINUSE ...) as an 'error' event, not through its
// promise: without this a busy port ends in a stack trace instead of one line.
process.on('uncaughtException', (err) => {
  process.stderr.write(`s3rver: ${err && err.message ? err.message : err}\n`)
  process.exit(1)
})

let stopping = false
function stop(signal) {
  if (stopping) return
  stopping = true
  const http = server.httpServer
  // a client holding a keep-alive connection must not keep us alive
  const force = setTimeout(() => process.exit(0), 3000)
  force.unref()
  if (!http) process.exit(0)
  http.close(() => process.exit(0))
  if (typeof http.closeAllConnections === 'function') http.closeAllConnections()
  process.stderr.write(`s3rver: ${signal}, shutting down\n`)
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))

server
  .run()
  .then((addr) => {
    process.stdout.write(`READY ${addr.port}\n`)
  })
  .catch((err) => {
    process.stderr.write(`s3rver: cannot start: ${err && err.message ? err.message : err}\n`)
    process.exit(1)
  })
