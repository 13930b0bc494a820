-- POST pre-signed webhook bodies, one per request, each wrk thread its own slice.
-- BODIES names a file of lines "<X-Hub-Signature-256>\t<body>".
local bodies = {}
local counter = 0
local threads = 0

function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

function init(args)
  for line in io.lines(os.getenv("BODIES")) do
    local tab = line:find("\t", 1, true)
    bodies[#bodies + 1] = { line:sub(1, tab - 1), line:sub(tab + 1) }
  end
  counter = offset or 0
end

function request()
  local item = bodies[(counter % #bodies) + 1]
  counter = counter + 2
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Hub-Signature-256"] = item[1],
  }, item[2])
end
