-- fulfillment_files_app.lua - what fulfillment_files_test.lua downloads from:
-- an image at a plain URL, as some models answer.
local crypto = require "crypto"

local M = {}

-- a 1x1 PNG
M.png = crypto.base64_decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==")

M.routes = {
  {"GET", "/image.png", function() return 200, {["content-type"] = "image/png"}, M.png end},
  {"GET", "/missing.png", function() return 404, nil, {error = "not found"} end},
}

return M
