-- wrk script: create a link through the REST API with a token from $CONFAB_TOKEN.
wrk.method = "POST"
wrk.body = '{"title":"Benchmark call","description":"Created by examples/bench/http.sh"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("CONFAB_TOKEN")

-- Fail loudly if the server answers anything but 201.
response = function(status, headers, body)
  if status ~= 201 then
    io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
    os.exit(1)
  end
end
